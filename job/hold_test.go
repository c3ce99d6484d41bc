package job

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/recoverpasscode/recoverpasscode/idempotency"
	"github.com/recoverpasscode/recoverpasscode/quota"
	"github.com/recoverpasscode/recoverpasscode/wire"
)

// TestHeldJobs: a job over its source's budget is handed back without
// touching Graph, the key or the limiter, and audited once; the
// deliveries it spent held do not count against MaxDeliveries.
func TestHeldJobs(t *testing.T) {
	u := unreachable{t}
	obs := &heldObserver{}
	q := &fakeQuota{}
	ledger := &failingLedger{}
	h, err := New(Config{Graph: u, Tokens: u, Limiter: u, Ledger: ledger, Quota: q, Observer: obs, Worker: "w", MaxDeliveries: 5})
	if err != nil {
		t.Fatal(err)
	}
	d := Delivery{Data: []byte(`{"id":"j1","managedDeviceId":"2d6a3d0e-8f5c-4d7a-9b1e-0b2f3c4d5e6f"}`), Meta: wire.Meta{Source: "judge"}, NumDelivered: 1}
	h.cfg.Policy.DefaultTenant = "33333333-3333-4333-8333-333333333333"

	q.a = quota.Admission{RetryAt: time.Now().Add(time.Hour), NewlyHeld: true, Holds: 1, Record: quota.Held{Budget: "50/1h"}}
	out := h.Handle(t.Context(), d)
	if out.Disposition != Retry || !out.Held || out.Delay != DefaultHoldRecheck || out.Result != nil {
		t.Fatalf("held job: %+v; want handed back for the recheck interval, marked held", out)
	}
	if len(obs.events) != 1 || obs.events[0].Kind != wire.KindHeld || obs.events[0].Reason == "" {
		t.Fatalf("audit events %+v, want one held event with a reason", obs.events)
	}
	q.a.NewlyHeld = false
	h.Handle(t.Context(), d)
	if len(obs.events) != 1 {
		t.Errorf("a second held delivery was audited again: %+v", obs.events)
	}

	// Freed after 20 held deliveries, on its 21st: not over MaxDeliveries.
	q.a = quota.Admission{Admitted: true, Freed: true, Released: true, Holds: 20, Record: quota.Held{ReleasedBy: "ops"}}
	d.NumDelivered = 21
	out = h.Handle(t.Context(), d)
	if out.Disposition != Retry || out.Delay != time.Second || ledger.calls != 1 {
		t.Fatalf("released job: %+v after %d ledger calls; want it to go on to its key (here refused)", out, ledger.calls)
	}
	if len(obs.events) != 2 || obs.events[1].Kind != wire.KindReleased || obs.events[1].Reason != "released by ops" {
		t.Errorf("audit events %+v, want a released event naming who", obs.events)
	}
	q.a = quota.Admission{Admitted: true, Holds: 20}
	d.NumDelivered = 26
	if out := h.Handle(t.Context(), d); out.Disposition != Term || out.Result.Status != wire.Failed {
		t.Errorf("6 deliveries besides the holds, MaxDeliveries 5: %+v, want failed", out)
	}
}

type fakeQuota struct{ a quota.Admission }

func (q *fakeQuota) Admit(context.Context, string, *wire.Job) (quota.Admission, error) {
	return q.a, nil
}

type heldObserver struct {
	nopObserver
	events []wire.AuditEvent
}

func (o *heldObserver) Held(_ context.Context, e wire.AuditEvent) { o.events = append(o.events, e) }

// failingLedger refuses every key, so a job that gets past the budget
// ends at its key.
type failingLedger struct{ calls int }

func (l *failingLedger) AcquireFor(context.Context, string, string, idempotency.Binding) (idempotency.Claim, error) {
	l.calls++
	return idempotency.Claim{}, errors.New("no key today")
}

func (l *failingLedger) Await(context.Context, idempotency.Claim) (idempotency.Claim, error) {
	return idempotency.Claim{}, errors.New("no key today")
}
