package idempotency_test

import (
	"testing"
	"time"

	"github.com/recoverpasscode/recoverpasscode/idempotency"
)

// A call Graph refused before acting (429, 503) must not make the next
// owner's result uncertain; one whose fate is unknown must.
func TestAnsweredCallClearsOnlyThisLeasesMark(t *testing.T) {
	srv := startBucket(t)
	ctx := testCtx(t)
	a := newStore(t, srv, "a", time.Minute)
	b := newStore(t, srv, "b", time.Minute)

	c, err := a.Claim(ctx, "throttled", "job-1")
	if err != nil || c.State != idempotency.Acquired {
		t.Fatalf("claim: %v %v", c.State, err)
	}
	if err := call(ctx, c, idempotency.Refused); err != nil {
		t.Fatal(err)
	}
	if err := c.Lease.Release(ctx); err != nil {
		t.Fatal(err)
	}
	next, err := b.Claim(ctx, "throttled", "job-1")
	if err != nil || next.State != idempotency.Acquired {
		t.Fatalf("claim after release: %v %v", next.State, err)
	}
	if next.PreviousCalling {
		t.Fatal("an answered call made the next owner uncertain")
	}

	// Unknown fate: a call that may have acted, then hand back.
	if err := call(ctx, next, idempotency.Unknown); err != nil {
		t.Fatal(err)
	}
	if err := next.Lease.Release(ctx); err != nil {
		t.Fatal(err)
	}
	third, err := a.Claim(ctx, "throttled", "job-1")
	if err != nil || third.State != idempotency.Acquired || !third.PreviousCalling {
		t.Fatalf("want a takeover that knows of the earlier call, got %+v, %v", third, err)
	}
	// The inherited flag survives this owner's own answered call.
	if err := call(ctx, third, idempotency.Refused); err != nil {
		t.Fatal(err)
	}
	if err := third.Lease.Release(ctx); err != nil {
		t.Fatal(err)
	}
	fourth, err := b.Claim(ctx, "throttled", "job-1")
	if err != nil || !fourth.PreviousCalling {
		t.Fatalf("inherited calling flag was cleared: %+v, %v", fourth, err)
	}
}

// Once a call of a lease may have acted, a later call of the same lease
// that was refused does not clear the mark: the earlier call's fate stays
// unknown.
func TestUnknownCallKeepsTheMarkForTheLease(t *testing.T) {
	srv := startBucket(t)
	ctx := testCtx(t)
	a := newStore(t, srv, "a", time.Minute)
	b := newStore(t, srv, "b", time.Minute)

	c, err := a.Acquire(ctx, "timed-out", "job-1")
	if err != nil || c.State != idempotency.Acquired {
		t.Fatalf("acquire: %v %v", c.State, err)
	}
	for _, fate := range []idempotency.Fate{idempotency.Unknown, idempotency.Refused, idempotency.NotCalled} {
		if err := call(ctx, c, fate); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Lease.Release(ctx); err != nil {
		t.Fatal(err)
	}
	next, err := b.Acquire(ctx, "timed-out", "job-1")
	if err != nil || !next.PreviousCalling || next.Attempts != 4 {
		t.Fatalf("after an unknown call and two answered ones: %+v, %v; want calling with 4 attempts", next, err)
	}
}
