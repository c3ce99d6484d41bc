package idempotency_test

import (
	"testing"
	"time"

	"github.com/recoverpasscode/recoverpasscode/idempotency"
)

// ClaimCalling writes the mark with the claim: the first MarkCalling costs
// nothing, a later one writes and counts, and a death before the call looks
// to the next owner like a death during it.
func TestClaimCallingMarksWithTheClaim(t *testing.T) {
	srv := startBucket(t)
	ctx := testCtx(t)
	a := newStore(t, srv, "a", 300*time.Millisecond)
	b := newStore(t, srv, "b", time.Minute)

	c, err := a.ClaimCalling(ctx, "k", "job-1")
	if err != nil || c.State != idempotency.Acquired || c.Attempts != 1 {
		t.Fatalf("claim calling: %+v, %v", c, err)
	}
	before := a.Stats().Ops()
	if err := a.MarkCalling(ctx, &c); err != nil || c.Attempts != 1 {
		t.Fatalf("first MarkCalling: attempts %d, %v", c.Attempts, err)
	}
	if ops := a.Stats().Ops() - before; ops != 0 {
		t.Errorf("the first MarkCalling after ClaimCalling made %d KV operations, want 0", ops)
	}
	if err := a.MarkCalling(ctx, &c); err != nil || c.Attempts != 2 {
		t.Fatalf("second MarkCalling: attempts %d, %v", c.Attempts, err)
	}
	if ops := a.Stats().Ops() - before; ops != 1 {
		t.Errorf("the second MarkCalling made %d KV operations in all, want 1", ops)
	}

	// A worker that dies right after ClaimCalling: its lease runs out and
	// the next owner must assume the call happened.
	d, err := a.ClaimCalling(ctx, "died", "job-2")
	if err != nil || d.State != idempotency.Acquired {
		t.Fatalf("claim calling: %+v, %v", d, err)
	}
	busy := mustClaim(t, b, "died", "job-3", idempotency.Busy)
	next, err := b.Await(ctx, "died", busy)
	if err != nil || next.State != idempotency.Acquired || !next.PreviousCalling || next.Attempts != 1 {
		t.Fatalf("takeover after a death before the call: %+v, %v", next, err)
	}
}

// A mark ClaimCalling made for a call that never came is undone by Release
// and MarkAnswered, so the next owner is not made uncertain for nothing.
func TestClaimCallingUndoneWithoutACall(t *testing.T) {
	tests := []struct {
		name    string
		handOff func(t *testing.T, s *idempotency.Store, c *idempotency.Claim)
	}{
		{"released before the call", func(t *testing.T, s *idempotency.Store, c *idempotency.Claim) {
			if err := s.Release(testCtx(t), c); err != nil {
				t.Fatal(err)
			}
		}},
		{"refused by the limiter, answered, released", func(t *testing.T, s *idempotency.Store, c *idempotency.Claim) {
			ctx := testCtx(t)
			if err := s.MarkCalling(ctx, c); err != nil {
				t.Fatal(err)
			}
			if err := s.MarkAnswered(ctx, c); err != nil {
				t.Fatal(err)
			}
			if err := s.Release(ctx, c); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := startBucket(t)
			a := newStore(t, srv, "a", time.Minute)
			b := newStore(t, srv, "b", time.Minute)
			c, err := a.ClaimCalling(testCtx(t), "k", "job-1")
			if err != nil || c.State != idempotency.Acquired {
				t.Fatalf("claim calling: %+v, %v", c, err)
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
func TestClaimCallingKeepsAnInheritedMark(t *testing.T) {
	srv := startBucket(t)
	ctx := testCtx(t)
	a := newStore(t, srv, "a", time.Minute)
	b := newStore(t, srv, "b", time.Minute)
	c := mustClaim(t, a, "k", "job-1", idempotency.Acquired)
	if err := a.MarkCalling(ctx, &c); err != nil {
		t.Fatal(err)
	}
	if err := a.Release(ctx, &c); err != nil {
		t.Fatal(err)
	}
	next, err := b.ClaimCalling(ctx, "k", "job-1")
	if err != nil || !next.PreviousCalling || next.Attempts != 2 {
		t.Fatalf("claim calling after a possible call: %+v, %v", next, err)
	}
	if err := b.Release(ctx, &next); err != nil {
		t.Fatal(err)
	}
	third := mustClaim(t, a, "k", "job-1", idempotency.Acquired)
	if !third.PreviousCalling || third.Attempts != 1 {
		t.Errorf("after an unused mark on an inherited one: %+v, want calling with 1 attempt", third)
	}
}
