package service_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/recoverpasscode/recoverpasscode/graph/graphsim"
	"github.com/recoverpasscode/recoverpasscode/internal/testsystem"
	"github.com/recoverpasscode/recoverpasscode/wire"
)

func TestSameKeyFromFiftyJobsAcrossFourWorkersCallsGraphOnce(t *testing.T) {
	t.Parallel()
	// Graph is slow, so the 50 jobs are all in flight while the first call runs.
	sys := testsystem.Start(t, graphsim.Config{Latency: 300 * time.Millisecond})
	for i := range 4 {
		sys.StartWorker(sys.Config(fmt.Sprintf("w%d", i)))
	}
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Go(func() {
			sys.Submit("ticketing", wire.Job{ID: fmt.Sprintf("dup-%02d", i), IdempotencyKey: "INC0012345/" + testsystem.Device, ManagedDeviceID: testsystem.Device})
		})
	}
	wg.Wait()
	results := sys.Results("", 50, 60*time.Second)
	replayed := 0
	for id, r := range results {
		if r.Status != wire.Succeeded {
			t.Errorf("%s: %s %s", id, r.Status, r.Error)
		}
		if r.Replayed {
			replayed++
		}
	}
	if calls := len(sys.GS.Calls()); calls != 1 {
		t.Errorf("graph called %d times for one key", calls)
	}
	if replayed != 49 {
		t.Errorf("%d replayed results, want 49", replayed)
	}
}

func TestResubmittedBatchIsAnsweredFromTheRecords(t *testing.T) {
	// It waits on timers (attempt timeouts, backoff, the rate window), not
	// the CPU, so it runs beside the package's other waiting tests.
	t.Parallel()
	sys := testsystem.Start(t, graphsim.Config{})
	cfg := sys.Config("w1")
	cfg.Concurrency = 32
	sys.StartWorker(cfg)
	// Both rounds come from one source, as a batch run again does: a key
	// is bound to the source that first used it.
	submitBatch := func(round string) {
		for i := range 200 {
			sys.Submit("batch", wire.Job{
				ID:              fmt.Sprintf("%s-%03d", round, i),
				IdempotencyKey:  fmt.Sprintf("batch-7/%03d", i),
				ManagedDeviceID: testsystem.DeviceN(i),
			})
		}
	}
	submitBatch("first")
	first := sys.Results("recoverpasscode.results.batch.*", 200, 60*time.Second)
	calls := len(sys.GS.Calls())
	if calls != 200 {
		t.Fatalf("first round: %d graph calls, want 200", calls)
	}
	submitBatch("again")
	// The stream holds both rounds' results; the second's are those of
	// the again- jobs.
	again := sys.Results("recoverpasscode.results.batch.*", 400, 60*time.Second)
	for id := range first {
		delete(again, id)
	}
	if n := len(sys.GS.Calls()) - calls; n != 0 {
		t.Errorf("re-submission made %d new graph calls", n)
	}
	for id, r := range again {
		if r.Status != wire.Succeeded || !r.Replayed {
			t.Errorf("%s: status %s replayed %v", id, r.Status, r.Replayed)
		}
	}
	for id, r := range first {
		if r.Replayed {
			t.Errorf("%s: first submission was replayed", id)
		}
	}
}

func TestKeyReusedForAnotherDeviceIsRejected(t *testing.T) {
	t.Parallel()
	sys := testsystem.Start(t, graphsim.Config{})
	sys.StartWorker(sys.Config("w1"))
	sys.Submit("ticketing", wire.Job{ID: "one", IdempotencyKey: "INC9", ManagedDeviceID: testsystem.Device})
	sys.Results("recoverpasscode.results.ticketing.one", 1, 20*time.Second)
	sys.Submit("ticketing", wire.Job{ID: "two", IdempotencyKey: "INC9", ManagedDeviceID: "0e0e0e0e-0e0e-4e0e-8e0e-0e0e0e0e0e0e"})
	r := sys.Results("recoverpasscode.results.ticketing.two", 1, 20*time.Second)["two"]
	if r.Status != wire.Rejected || len(sys.GS.Calls()) != 1 {
		t.Fatalf("result %+v after %d calls", r, len(sys.GS.Calls()))
	}
}

// A key belongs to the source that first used it: automation reusing
// ticketing's key is rejected, not answered from ticketing's record; the
// rejection is dead-lettered and audited as every rejection is.
func TestKeyReusedByAnotherSourceIsRejected(t *testing.T) {
	sys := testsystem.Start(t, graphsim.Config{})
	sys.StartWorker(sys.Config("w1"))
	sys.Submit("ticketing", wire.Job{ID: "one", IdempotencyKey: "INC0012345", ManagedDeviceID: testsystem.Device})
	if r := sys.Results("recoverpasscode.results.ticketing.one", 1, 20*time.Second)["one"]; r.Status != wire.Succeeded {
		t.Fatalf("first job: %+v", r)
	}
	sys.Submit("automation", wire.Job{ID: "two", IdempotencyKey: "INC0012345", ManagedDeviceID: testsystem.Device})
	r := sys.Results("recoverpasscode.results.automation.two", 1, 20*time.Second)["two"]
	if r.Status != wire.Rejected || r.Replayed || !strings.Contains(r.Error, "first used by job one (source ticketing)") {
		t.Fatalf("result %+v", r)
	}
	if n := len(sys.GS.Calls()); n != 1 {
		t.Errorf("graph called %d times, want once", n)
	}
	if d, ok := sys.DeadLetters(1, 20*time.Second)["two"]; !ok || !strings.HasPrefix(d.Reason, "rejected: ") {
		t.Errorf("dead letter %+v", d)
	}
	events := testsystem.ReadStream(t, sys.JS, sys.Names.AuditStream(), "recoverpasscode.audit.automation.>", 1, 20*time.Second, func(data []byte) (string, wire.AuditEvent) {
		var e wire.AuditEvent
		if err := json.Unmarshal(data, &e); err != nil {
			t.Fatalf("audit event is not JSON: %v", err)
		}
		return e.JobID + "/" + e.Kind, e
	})
	if e, ok := events["two/"+wire.KindDecision]; !ok || e.Status != wire.Rejected {
		t.Errorf("audit events %+v; want the rejection's decision", events)
	}
}
