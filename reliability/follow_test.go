package reliability_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/recoverpasscode/recoverpasscode/devserver/devservertest"
	"github.com/recoverpasscode/recoverpasscode/follow"
	"github.com/recoverpasscode/recoverpasscode/graph/graphsim"
	"github.com/recoverpasscode/recoverpasscode/internal/testsystem"
	"github.com/recoverpasscode/recoverpasscode/ratelimit"
	"github.com/recoverpasscode/recoverpasscode/service"
	"github.com/recoverpasscode/recoverpasscode/wire"
)

// followScale compresses time in TestFollowThroughWithKills: a device
// that checks in 90 s after the call here does so after 90 s / followScale,
// and the first poll comes a minute / followScale after the call.
const followScale = 20

// TestFollowThroughWithKills follows 1,000 jobs whose devices check in
// 0 to 90 s (scaled) after the call, 5% never and 5% failing, with two
// worker processes of which two are SIGKILLed while they follow (and
// replaced). Every job ends with one result and one confirmation of its
// device's state; no POST is repeated; the reads stay within the read
// limit in every window, with no 429.
func TestFollowThroughWithKills(t *testing.T) {
	const (
		n         = 1000
		readLimit = 150
		window    = 2 * time.Second
	)
	ns := devservertest.Start(t)
	want := make(map[string]string, n) // job id → the confirmation's state
	device := func(i int) string { return testsystem.DeviceN(500_000 + i) }
	sim := graphsim.Config{ReadLimit: readLimit, Window: window}
	r := newRig(t, sim, ns.URL(), 1)
	jobs := make([]wire.Job, 0, n)
	for i := range n {
		id := fmt.Sprintf("follow-%04d", i)
		delay := time.Duration(i*37%100) * 90 * time.Second / 100 / followScale
		state := wire.StateDone
		switch i % 20 {
		case 0:
			state = "" // never checks in
		case 1:
			state = wire.StateFailed
		}
		r.gs.SetDeviceCheckIn(device(i), delay, state)
		if state == "" {
			state = wire.StateUnknown
		}
		want[id] = state
		jobs = append(jobs, wire.Job{ID: id, ManagedDeviceID: device(i), Follow: true, Ticket: "INC" + fmt.Sprint(i)})
	}
	spawned := 0
	spawn := func() *proc {
		cfg := r.config(fmt.Sprintf("follow-w%d", spawned))
		spawned++
		cfg.Concurrency = 16
		// Leases long enough that a loaded host never lets one lapse
		// while its job calls Graph: the takeover that may repeat a POST
		// is TestWorkerKilled's subject, not this one's.
		cfg.Lease = 15 * time.Second
		// And Graph calls (here, on a loaded host) are given time to be
		// answered: a timed-out POST is retried, its outcome unknown.
		cfg.AttemptTimeout = 10 * time.Second
		cfg.Follow = service.FollowConfig{
			ReadRate: ratelimit.Rate{N: readLimit, Per: window},
			Schedule: follow.Schedule{
				First: time.Minute / followScale,
				Max:   15 * time.Minute / followScale,
				// A device silent this long is unknown: well past the 90 s
				// (scaled) of the slowest, short enough for a test.
				For: 12 * time.Second,
			},
			Concurrency: 32,
		}
		return r.startProcess(cfg, "")
	}
	procs := []*proc{spawn(), spawn()}
	start := time.Now()
	r.submit(t.Context(), "automation", jobs)
	results := readAll[wire.Result](t, r.js, r.names.ResultsStream(), r.names.ResultsWildcard(), n, 60*time.Second, func(x wire.Result) string { return x.JobID })
	t.Logf("%d results after %s", len(results), time.Since(start).Round(time.Millisecond))
	for id, res := range results {
		if res.Status != wire.Succeeded || !res.Follow || res.Uncertain {
			t.Errorf("%s: %s (follow %t, uncertain %t %s): %s", id, res.Status, res.Follow, res.Uncertain, res.UncertainReason, res.Error)
		}
	}

	// Kill a follower at a quarter and at half of the confirmations, each
	// with polls in flight, and replace it.
	confs := make(map[string]wire.Confirmation, n)
	read := streamReader[wire.Confirmation](t, r.js, r.names.ConfirmationsStream(), r.names.ConfirmationsWildcard())
	for _, at := range []int{n / 4, n / 2} {
		for len(confs) < at {
			c := read(60 * time.Second)
			if _, dup := confs[c.JobID]; dup {
				t.Fatalf("a second confirmation for job %s", c.JobID)
			}
			confs[c.JobID] = c
		}
		procs[0].kill()
		t.Logf("killed %s at %d confirmations, %s in", procs[0].name, len(confs), time.Since(start).Round(time.Millisecond))
		procs = append(procs[1:], spawn())
	}
	for len(confs) < n {
		c := read(60 * time.Second)
		if _, dup := confs[c.JobID]; dup {
			t.Fatalf("a second confirmation for job %s", c.JobID)
		}
		confs[c.JobID] = c
	}
	elapsed := time.Since(start)

	states := map[string]int{}
	for id, st := range want {
		c := confs[id]
		states[c.State]++
		if c.State != st {
			t.Errorf("%s: confirmation says %s; want %s", id, c.State, st)
		}
	}
	// Nothing more arrives: no job has a second confirmation.
	s, err := r.js.Stream(t.Context(), r.names.ConfirmationsStream())
	if err != nil {
		t.Fatal(err)
	}
	if info, err := s.Info(t.Context()); err != nil || info.State.Msgs != n {
		t.Errorf("the confirmations stream holds %v messages (%v); want %d", info.State.Msgs, err, n)
	}
	posts, reads, limited := 0, 0, 0
	for _, c := range r.gs.Calls() {
		switch {
		case c.Method == http.MethodPost:
			posts++
		case c.Method == http.MethodGet:
			reads++
		}
		if c.LimitRejected {
			limited++
		}
	}
	for i := range n {
		if p := r.gs.Performed(device(i)); p != 1 {
			t.Errorf("device %d acted on %d times", i, p)
		}
	}
	maxReads := r.gs.MaxReadsInWindow(testsystem.Tenant, testsystem.Client, window)
	t.Logf("%d confirmations %v in %s; %d POSTs, %d reads (%.1f per job), at most %d reads in a %s window (limit %d), %d answered 429",
		len(confs), states, elapsed.Round(time.Millisecond), posts, reads, float64(reads)/n, maxReads, window, readLimit, limited)
	if posts != n || maxReads > readLimit || limited > 0 {
		t.Errorf("%d POSTs for %d jobs, at most %d reads in a window of the %d allowed, %d 429s", posts, n, maxReads, readLimit, limited)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	for {
		fs, err := r.js.Stream(ctx, r.names.FollowsStream())
		if err != nil {
			t.Fatal(err)
		}
		info, err := fs.Info(ctx)
		if err == nil && info.State.Msgs == 0 {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("follow records left: %v", info.State.Msgs)
		}
		<-time.After(50 * time.Millisecond)
	}
}

// readAll reads n messages of a stream into a map by id, failing on a
// second message for one id.
func readAll[T any](t *testing.T, js jetstream.JetStream, stream, filter string, n int, timeout time.Duration, id func(T) string) map[string]T {
	t.Helper()
	read := streamReader[T](t, js, stream, filter)
	out := make(map[string]T, n)
	for len(out) < n {
		v := read(timeout)
		if _, dup := out[id(v)]; dup {
			t.Fatalf("%s: a second message for %s", stream, id(v))
		}
		out[id(v)] = v
	}
	return out
}

// streamReader returns a function that reads the next message of a stream
// matching filter, decoded, waiting at most its timeout.
func streamReader[T any](t *testing.T, js jetstream.JetStream, stream, filter string) func(time.Duration) T {
	t.Helper()
	cons, err := js.OrderedConsumer(t.Context(), stream, jetstream.OrderedConsumerConfig{FilterSubjects: []string{filter}})
	if err != nil {
		t.Fatal(err)
	}
	it, err := cons.Messages()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(it.Stop)
	return func(timeout time.Duration) T {
		t.Helper()
		stop := time.AfterFunc(timeout, it.Stop)
		defer stop.Stop()
		msg, err := it.Next()
		if err != nil {
			t.Fatalf("%s: next message within %s: %v", stream, timeout, err)
		}
		var v T
		if err := json.Unmarshal(msg.Data(), &v); err != nil {
			t.Fatalf("%s: %v: %s", stream, err, strings.TrimSpace(string(msg.Data())))
		}
		return v
	}
}
