package reliability_test

import (
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/recoverpasscode/recoverpasscode/devserver"
	"github.com/recoverpasscode/recoverpasscode/graph/graphsim"
	"github.com/recoverpasscode/recoverpasscode/internal/testsystem"
	"github.com/recoverpasscode/recoverpasscode/reliability"
)

// outage is how long NATS is gone in TestNATSOutage.
const outage = 10 * time.Second

// TestNATSOutage stops the only NATS server for ten seconds mid-batch and
// starts it again on the same port with the same data, as a restarted
// server or a network partition looks to a worker. The workers reconnect
// by themselves; nothing is lost or doubled. Afterwards their KeyValue
// watches must still work: a 429 pause set by one worker holds the other.
func TestNATSOutage(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ns, err := devserver.Start(devserver.Config{StoreDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	// Whichever server runs at the end stops after the workers have
	// drained, as this cleanup is registered before theirs.
	t.Cleanup(func() {
		if ns != nil {
			ns.Shutdown()
		}
	})
	u, err := url.Parse(ns.URL())
	if err != nil {
		t.Fatal(err)
	}
	port, err := strconv.Atoi(u.Port())
	if err != nil {
		t.Fatal(err)
	}
	r := newRig(t, graphsim.Config{Latency: 50 * time.Millisecond}, ns.URL(), 1)
	for _, name := range []string{"outage-a", "outage-b"} {
		r.startWorker(r.config(name))
	}
	jobs, want := batch("outage", 0, 300, 10)
	r.submit(t.Context(), "batch", jobs)
	r.waitCalls(t.Context(), 60)

	ns.Shutdown()
	down := len(r.gs.Calls())
	<-time.After(outage) // the fault itself: ten seconds without NATS
	ns, err = devserver.Start(devserver.Config{Port: port, StoreDir: dir})
	if err != nil {
		t.Fatalf("restart NATS on port %d: %v", port, err)
	}
	t.Logf("NATS was down for %s after %d Graph calls", outage, down)
	r.settle(want, 120*time.Second)
	checkAuditComplete(t, r, len(want))

	t.Run("pauses still reach every worker", func(t *testing.T) {
		checkPauseHolds(t, r, want)
	})
}

// checkAuditComplete waits until the audit stream holds one event per Graph
// call and one decision per job: events whose confirmation the outage cut
// off are stored again, once each (the stream deduplicates them by id).
func checkAuditComplete(t *testing.T, r *rig, jobs int) {
	t.Helper()
	want := uint64(len(r.gs.Calls()) + jobs)
	var got uint64
	ok := testsystem.Eventually(90*time.Second, func() bool {
		st, err := r.js.Stream(t.Context(), r.names.AuditStream())
		if err != nil {
			return false
		}
		info, err := st.Info(t.Context())
		if err != nil {
			return false
		}
		got = info.State.Msgs
		return got >= want
	})
	if !ok || got != want {
		t.Errorf("audit stream holds %d events, want %d (one per Graph call and per job)", got, want)
	}
	t.Logf("audit events: %d", got)
}

// checkPauseHolds makes Graph answer one call with 429 Retry-After 4, then
// proves from Graph's call log that no worker called during the pause
// (after a grace period for calls already on their way). A worker whose
// watch of the limits bucket died would keep calling. done lists the jobs
// submitted so far; the new batch is checked with them.
func checkPauseHolds(t *testing.T, r *rig, done []reliability.Expected) {
	const pause, grace = 4 * time.Second, time.Second
	before := len(r.gs.Calls())
	r.gs.ThrottleTenant(testsystem.Tenant, "4", 1)
	jobs, want := batch("paused", 10000, 60, 0)
	r.submit(t.Context(), "batch", jobs)
	r.settle(append(want, done...), 60*time.Second)
	calls := r.gs.Calls()[before:]
	var throttled time.Time
	for _, c := range calls {
		if c.Status == 429 && c.Injected {
			throttled = c.Time
			break
		}
	}
	if throttled.IsZero() {
		t.Fatal("no call was throttled")
	}
	for _, c := range calls {
		if c.Time.After(throttled.Add(grace)) && c.Time.Before(throttled.Add(pause-grace)) {
			t.Errorf("a worker called Graph %s after a 429 with Retry-After 4: %s", c.Time.Sub(throttled).Round(time.Millisecond), c.Path)
		}
	}
}
