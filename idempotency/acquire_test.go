package idempotency_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/recoverpasscode/recoverpasscode/idempotency"
)

// Acquire writes the mark with the claim: the first Call's mark costs
// nothing, a later one writes and counts, and a death before the call looks
// to the next owner like a death during it.
func TestAcquireMarksWithTheClaim(t *testing.T) {
	srv := startBucket(t)
	ctx := testCtx(t)
	a := newStore(t, srv, "a", 300*time.Millisecond)
	b := newStore(t, srv, "b", time.Minute)
	// A long lease for the counted calls, so that none needs a renewal.
	long := newStore(t, srv, "a", time.Minute)

	c, err := long.Acquire(ctx, "k", "job-1")
	if err != nil || c.State != idempotency.Acquired || c.Attempts != 1 {
		t.Fatalf("acquire: %+v, %v", c, err)
	}
	before := long.Stats().Ops()
	if err := call(ctx, c, idempotency.Acted); err != nil || c.Lease.Attempts() != 1 {
		t.Fatalf("first Call: attempts %d, %v", c.Lease.Attempts(), err)
	}
	if ops := long.Stats().Ops() - before; ops != 0 {
		t.Errorf("the first Call after Acquire made %d KV operations, want 0", ops)
	}
	if err := call(ctx, c, idempotency.Acted); err != nil || c.Lease.Attempts() != 2 {
		t.Fatalf("second Call: attempts %d, %v", c.Lease.Attempts(), err)
	}
	if ops := long.Stats().Ops() - before; ops != 1 {
		t.Errorf("the second Call made %d KV operations in all, want 1", ops)
	}

	// A worker that dies right after Acquire: its lease runs out and
	// the next owner must assume the call happened.
	d, err := a.Acquire(ctx, "died", "job-2")
	if err != nil || d.State != idempotency.Acquired {
		t.Fatalf("acquire: %+v, %v", d, err)
	}
	busy := mustClaim(t, b, "died", "job-3", idempotency.Busy)
	next, err := b.Await(ctx, busy)
	if err != nil || next.State != idempotency.Acquired || !next.PreviousCalling || next.Attempts != 1 {
		t.Fatalf("takeover after a death before the call: %+v, %v", next, err)
	}
}

// A mark Acquire made for a call that never came is undone by Release and
// by a Call whose wait failed, so the next owner is not made uncertain for
// nothing.
func TestAcquireUndoneWithoutACall(t *testing.T) {
	tests := []struct {
		name    string
		handOff func(t *testing.T, s *idempotency.Store, c *idempotency.Claim)
	}{
		{"released before the call", func(t *testing.T, s *idempotency.Store, c *idempotency.Claim) {
			if err := c.Lease.Release(testCtx(t)); err != nil {
				t.Fatal(err)
			}
		}},
		{"refused by the limiter, answered, released", func(t *testing.T, s *idempotency.Store, c *idempotency.Claim) {
			ctx := testCtx(t)
			refused := errors.New("rate limit: closed")
			fate, err := c.Lease.Call(ctx, func(context.Context) error { return refused }, func(context.Context) idempotency.Fate {
				t.Fatal("called after the wait failed")
				return idempotency.Acted
			})
			if !errors.Is(err, refused) || fate != idempotency.NotCalled {
				t.Fatalf("Call with a failing wait = %s, %v; want not called, the wait's error", fate, err)
			}
			if err := c.Lease.Release(ctx); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := startBucket(t)
			a := newStore(t, srv, "a", time.Minute)
			b := newStore(t, srv, "b", time.Minute)
			c, err := a.Acquire(testCtx(t), "k", "job-1")
			if err != nil || c.State != idempotency.Acquired {
				t.Fatalf("acquire: %+v, %v", c, err)
			}
			tt.handOff(t, a, &c)
			next := mustClaim(t, b, "k", "job-1", idempotency.Acquired)
			if next.PreviousCalling || next.TakenOver {
				t.Errorf("next owner after no call: %+v, want a fresh claim", next)
			}
		})
	}
}

// After an earlier owner's possible call, releasing an unused mark keeps
// the record calling (that call's fate is unknown) but counts no attempt.
func TestAcquireKeepsAnInheritedMark(t *testing.T) {
	srv := startBucket(t)
	ctx := testCtx(t)
	a := newStore(t, srv, "a", time.Minute)
	b := newStore(t, srv, "b", time.Minute)
	c := mustClaim(t, a, "k", "job-1", idempotency.Acquired)
	if err := call(ctx, c, idempotency.Unknown); err != nil {
		t.Fatal(err)
	}
	if err := c.Lease.Release(ctx); err != nil {
		t.Fatal(err)
	}
	next, err := b.Acquire(ctx, "k", "job-1")
	if err != nil || !next.PreviousCalling || next.Attempts != 2 {
		t.Fatalf("claim calling after a possible call: %+v, %v", next, err)
	}
	if err := next.Lease.Release(ctx); err != nil {
		t.Fatal(err)
	}
	third := mustClaim(t, a, "k", "job-1", idempotency.Acquired)
	if !third.PreviousCalling || third.Attempts != 1 {
		t.Errorf("after an unused mark on an inherited one: %+v, want calling with 1 attempt", third)
	}
}
