package gateway

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/recoverpasscode/recoverpasscode/devserver/devservertest"
	"github.com/recoverpasscode/recoverpasscode/wire"
)

// TestWaitersShareOneSubscription checks how waiting requests get their
// results: every waiter of a job gets it, a result published the moment
// after add is not missed, a stopped wait leaves nothing behind, and a
// source's waits share one subscription however many there are (the
// server sees no SUB and UNSUB per request).
func TestWaitersShareOneSubscription(t *testing.T) {
	ns := devservertest.Start(t)
	nc, err := nats.Connect(ns.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	names := wire.Names{}
	ws := newWaiters(nc, names)
	publish := func(source, id string) {
		t.Helper()
		data, _ := json.Marshal(wire.Result{JobID: id, Status: wire.Succeeded})
		if err := nc.Publish(names.Result(source, id), data); err != nil {
			t.Fatal(err)
		}
	}
	got := func(w *waiter) (wire.Result, bool) {
		t.Helper()
		select {
		case res := <-w.ch:
			return res, true
		case <-time.After(10 * time.Second):
			return wire.Result{}, false
		}
	}

	// Two requests for one job (a retried POST with the same key), and
	// one for another job of the same source.
	a1, err := ws.add("ticketing", "job-a")
	if err != nil {
		t.Fatal(err)
	}
	a2, _ := ws.add("ticketing", "job-a")
	b, _ := ws.add("ticketing", "job-b")
	publish("ticketing", "job-a") // at once: sent after the subscription
	for _, w := range []*waiter{a1, a2} {
		if res, ok := got(w); !ok || res.JobID != "job-a" {
			t.Fatalf("a waiter of job-a got %+v, %v", res, ok)
		}
	}
	select {
	case res := <-b.ch:
		t.Fatalf("the waiter of job-b got job-a's result %+v", res)
	default:
	}
	for _, w := range []*waiter{a1, a2, b} {
		w.stop()
	}

	// Many waits later, and another source: one subscription per source.
	for i := range 50 {
		w, err := ws.add("ticketing", "job-c")
		if err != nil {
			t.Fatal(err)
		}
		if i == 49 {
			publish("ticketing", "job-c")
			if res, ok := got(w); !ok || res.JobID != "job-c" {
				t.Fatalf("the waiter of job-c got %+v, %v", res, ok)
			}
		}
		w.stop()
	}
	o, _ := ws.add("other", "job-d")
	publish("other", "job-d")
	if res, ok := got(o); !ok || res.JobID != "job-d" {
		t.Fatalf("the waiter of other's job-d got %+v, %v", res, ok)
	}
	o.stop()
	if n := nc.NumSubscriptions(); n != 2 {
		t.Errorf("%d subscriptions after 54 waits of 2 sources, want 2 (one per source)", n)
	}
	ws.mu.Lock()
	left := len(ws.byID)
	ws.mu.Unlock()
	if left != 0 {
		t.Errorf("%d subjects still have waiters after every wait stopped", left)
	}
}
