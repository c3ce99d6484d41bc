package job_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/recoverpasscode/recoverpasscode/devserver/devservertest"
	"github.com/recoverpasscode/recoverpasscode/graph"
	"github.com/recoverpasscode/recoverpasscode/graph/graphsim"
	"github.com/recoverpasscode/recoverpasscode/idempotency"
	"github.com/recoverpasscode/recoverpasscode/job"
	"github.com/recoverpasscode/recoverpasscode/ratelimit"
	"github.com/recoverpasscode/recoverpasscode/wire"
)

// An idempotency key is bound to the source and the target of its first
// job: a later job with the key for another device, another path form or
// from another source is rejected without a Graph call and without
// touching the key's record, whether the first job finished or was handed
// back after a call; the same source and target are answered from the
// record as before, a record written before keys were bound answers any
// job as before, and a job that named its device by serial number is
// bound to the device it resolved to.
func TestKeyIsBoundToItsFirstSourceAndTarget(t *testing.T) {
	ns := devservertest.Start(t)
	gs := graphsim.New(graphsim.Config{Limit: -1})
	t.Cleanup(gs.Close)
	gs.AddTenant(benchTenant)
	gs.AddApp(benchClient, benchSecret)
	const (
		dev1 = "2d6a3d0e-8f5c-4d7a-9b1e-000000000001"
		dev2 = "2d6a3d0e-8f5c-4d7a-9b1e-000000000002"
	)
	gs.AddDevice(graphsim.Device{ID: dev1, SerialNumber: "SER-1"})
	gs.AddDevice(graphsim.Device{ID: dev2, SerialNumber: "SER-2"})
	srv := benchServers{NATS: ns.URL(), Graph: gs.GraphURL(), Authority: gs.AuthorityHost(), CA: gs.CACertPEM()}
	var keys jetstream.KeyValue
	h, store := newBenchHandlerWith(t, srv, func(cfg *job.Config, _ *idempotency.Config, kv *jetstream.KeyValue) {
		cfg.Devices = cfg.Graph.(*graph.Client)
		cfg.Reads = cfg.Limiter.(*ratelimit.Limiter) // unlimited, as the POSTs'
		cfg.Backoff.MaxAttempts = 1                  // an unknown outcome hands the key back at once
		keys = *kv
	})
	seq := uint64(0)
	handle := func(t *testing.T, source, id, body string) *wire.Result {
		t.Helper()
		seq++
		out := h.Handle(t.Context(), job.Delivery{
			Data:         []byte(body),
			Meta:         wire.Meta{Source: source, MsgID: id, Stream: "RECOVERPASSCODE_JOBS", Sequence: seq, Timestamp: time.Now()},
			NumDelivered: 1,
		})
		if out.Result == nil {
			t.Fatalf("%s: no result: %+v", id, out)
		}
		if out.Result.Status == wire.Rejected && (out.Disposition != job.Term || !strings.HasPrefix(out.DeadLetter, "rejected: ")) {
			t.Errorf("%s: rejected with disposition %v, dead letter %q; want as every rejection", id, out.Disposition, out.DeadLetter)
		}
		return out.Result
	}
	posts := func() (n int) {
		for _, c := range gs.Calls() {
			if c.Method == http.MethodPost {
				n++
			}
		}
		return n
	}
	revision := func(t *testing.T, key string) uint64 {
		t.Helper()
		e, err := keys.Get(t.Context(), idempotency.KVKey(job.LedgerKey(&wire.Job{TenantID: benchTenant, IdempotencyKey: key})))
		if err != nil {
			t.Fatalf("record of %s: %v", key, err)
		}
		return e.Revision()
	}
	body := func(id, key, fields string) string {
		return fmt.Sprintf(`{"id":%q,"idempotencyKey":%q,%s}`, id, key, fields)
	}
	on := func(dev string) string { return fmt.Sprintf(`"managedDeviceId":%q`, dev) }
	mustBe := func(t *testing.T, r *wire.Result, st wire.Status, replayed bool) {
		t.Helper()
		if r.Status != st || r.Replayed != replayed {
			t.Fatalf("%s: %s (replayed %v) %q; want %s (replayed %v)", r.JobID, r.Status, r.Replayed, r.Error, st, replayed)
		}
	}
	// refused checks the rejection of a job whose key is bound elsewhere.
	refused := func(t *testing.T, r *wire.Result, says ...string) {
		t.Helper()
		mustBe(t, r, wire.Rejected, false)
		if r.Graph != nil {
			t.Errorf("%s: rejected with a Graph outcome %+v", r.JobID, r.Graph)
		}
		for _, s := range append(says, "was first used by job", "nothing was done", "use a new idempotencyKey") {
			if !strings.Contains(r.Error, s) {
				t.Errorf("%s: error %q does not say %q", r.JobID, r.Error, s)
			}
		}
	}
	path := func(dev string) string { return "/deviceManagement/managedDevices/" + dev + "/recoverPasscode" }

	t.Run("another device, after the first succeeded", func(t *testing.T) {
		before := posts()
		mustBe(t, handle(t, "ticketing", "a1", body("a1", "INC1", on(dev1))), wire.Succeeded, false)
		rev := revision(t, "INC1")
		refused(t, handle(t, "ticketing", "a2", body("a2", "INC1", on(dev2))), "job a1 (source ticketing)", path(dev1), "not "+path(dev2))
		if n := posts() - before; n != 1 || gs.Performed(dev2) != 0 {
			t.Errorf("%d calls, %d on the second device; want 1 in all, none on it", n, gs.Performed(dev2))
		}
		if revision(t, "INC1") != rev {
			t.Error("the rejected job wrote the first device's record")
		}
		c, err := store.AcquireFor(t.Context(), job.LedgerKey(&wire.Job{TenantID: benchTenant, IdempotencyKey: "INC1"}), "check",
			job.LedgerBinding(&wire.Job{TenantID: benchTenant, ManagedDeviceID: dev1}, "ticketing"))
		if err != nil || c.State != idempotency.Done || c.JobID != "a1" || c.OutcomeStatus != string(wire.Succeeded) {
			t.Errorf("the first device's record: %+v, %v", c, err)
		}
	})

	t.Run("another device, after the first was handed back", func(t *testing.T) {
		// Graph acts but answers 504: the first job gives up and the key
		// is released, marked calling, for its next delivery to take over.
		gs.FailNext(1, graphsim.Fault{Status: http.StatusGatewayTimeout, PerformBeforeFailing: true})
		before := posts()
		mustBe(t, handle(t, "ticketing", "b1", body("b1", "INC2", on(dev1))), wire.Failed, false)
		rev := revision(t, "INC2")
		refused(t, handle(t, "ticketing", "b2", body("b2", "INC2", on(dev2))), path(dev1), "not "+path(dev2))
		if n := posts() - before; n != 1 {
			t.Errorf("%d calls; want 1, the first job's", n)
		}
		if revision(t, "INC2") != rev {
			t.Error("the rejected job wrote the first device's record")
		}
		// The first job's next delivery still takes its key over.
		r := handle(t, "ticketing", "b1", body("b1", "INC2", on(dev1)))
		mustBe(t, r, wire.Succeeded, false)
		if !r.Uncertain {
			t.Error("the takeover after a call that may have acted is not uncertain")
		}
	})

	t.Run("another path form", func(t *testing.T) {
		mustBe(t, handle(t, "ticketing", "c1", body("c1", "INC3", on(dev1))), wire.Succeeded, false)
		before := posts()
		refused(t, handle(t, "ticketing", "c2", body("c2", "INC3", on(dev1)+`,"userId":"helpdesk@contoso.com"`)),
			path(dev1), "not /users/helpdesk@contoso.com/managedDevices/"+dev1)
		if n := posts() - before; n != 0 {
			t.Errorf("%d calls for the rejected job", n)
		}
	})

	t.Run("another source", func(t *testing.T) {
		mustBe(t, handle(t, "ticketing", "d1", body("d1", "INC0012345", on(dev1))), wire.Succeeded, false)
		before, rev := posts(), revision(t, "INC0012345")
		refused(t, handle(t, "automation", "d2", body("d2", "INC0012345", on(dev1))),
			"job d1 (source ticketing)", "belongs to the source that first used it", "for source automation")
		if n := posts() - before; n != 0 {
			t.Errorf("%d calls for the rejected job", n)
		}
		if revision(t, "INC0012345") != rev {
			t.Error("the rejected job wrote the other source's record")
		}
	})

	t.Run("the same source and target", func(t *testing.T) {
		before := posts()
		mustBe(t, handle(t, "ticketing", "e1", body("e1", "INC5", on(dev1))), wire.Succeeded, false)
		r := handle(t, "ticketing", "e2", body("e2", "INC5", on(dev1)))
		mustBe(t, r, wire.Succeeded, true)
		if n := posts() - before; n != 1 || r.Graph == nil || r.Graph.Status != http.StatusNoContent {
			t.Errorf("%d calls, replayed Graph outcome %+v; want 1 call and its 204", n, r.Graph)
		}
	})

	t.Run("a record written before keys were bound", func(t *testing.T) {
		// As a worker of the previous release wrote it: no binding.
		key := job.LedgerKey(&wire.Job{TenantID: benchTenant, IdempotencyKey: "INC6"})
		c, err := store.Acquire(t.Context(), key, "f1")
		if err != nil {
			t.Fatal(err)
		}
		outcome := fmt.Sprintf(`{"jobId":"f1","idempotencyKey":"INC6","source":"ticketing","tenantId":%q,"managedDeviceId":%q,"status":"succeeded","graph":{"status":204}}`, benchTenant, dev1)
		if err := c.Lease.Complete(t.Context(), string(wire.Succeeded), []byte(outcome)); err != nil {
			t.Fatal(err)
		}
		before := posts()
		mustBe(t, handle(t, "automation", "f2", body("f2", "INC6", on(dev1))), wire.Succeeded, true)
		if n := posts() - before; n != 0 {
			t.Errorf("%d calls for a job answered from the record", n)
		}
	})

	t.Run("a device named by serial number binds the device it resolved to", func(t *testing.T) {
		// The serial job acts on dev1 and is handed back, as above.
		gs.FailNext(1, graphsim.Fault{Status: http.StatusGatewayTimeout, PerformBeforeFailing: true})
		before := posts()
		mustBe(t, handle(t, "automation", "g1", body("g1", "INC7", `"serialNumber":"SER-1"`)), wire.Failed, false)
		// Another serial, another device: rejected, as its resolved id is
		// not the one the key is bound to.
		refused(t, handle(t, "automation", "g2", body("g2", "INC7", `"serialNumber":"SER-2"`)), path(dev1), "not "+path(dev2))
		// The resolved device named by its id is the same target.
		r := handle(t, "automation", "g3", body("g3", "INC7", on(dev1)))
		mustBe(t, r, wire.Succeeded, false)
		if n := posts() - before; n != 2 || gs.Performed(dev2) != 0 {
			t.Errorf("%d calls, %d on the other device; want 2 on %s (the first job's, the takeover's)", n, gs.Performed(dev2), dev1)
		}
		mustBe(t, handle(t, "automation", "g4", body("g4", "INC7", `"serialNumber":"SER-1"`)), wire.Succeeded, true)
	})
}
