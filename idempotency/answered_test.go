package idempotency_test

import (
	"testing"
	"time"

	"github.com/recoverpasscode/recoverpasscode/idempotency"
)

// A call Graph refused before acting (429, 503) must not make the next
// owner's result uncertain; one whose fate is unknown must.
func TestMarkAnsweredClearsOnlyThisClaimsCall(t *testing.T) {
	srv := startBucket(t)
	ctx := testCtx(t)
	a := newStore(t, srv, "a", time.Minute)
	b := newStore(t, srv, "b", time.Minute)

	c, err := a.Claim(ctx, "throttled", "job-1")
	if err != nil || c.State != idempotency.Acquired {
		t.Fatalf("claim: %v %v", c.State, err)
	}
	if err := a.MarkCalling(ctx, &c); err != nil {
		t.Fatal(err)
	}
	if err := a.MarkAnswered(ctx, &c); err != nil {
		t.Fatal(err)
	}
	if err := a.Release(ctx, &c); err != nil {
		t.Fatal(err)
	}
	next, err := b.Claim(ctx, "throttled", "job-1")
	if err != nil || next.State != idempotency.Acquired {
		t.Fatalf("claim after release: %v %v", next.State, err)
	}
	if next.PreviousCalling {
		t.Fatal("an answered call made the next owner uncertain")
	}

	// Unknown fate: MarkCalling, then hand back without MarkAnswered.
	if err := b.MarkCalling(ctx, &next); err != nil {
		t.Fatal(err)
	}
	if err := b.Release(ctx, &next); err != nil {
		t.Fatal(err)
	}
	third, err := a.Claim(ctx, "throttled", "job-1")
	if err != nil || third.State != idempotency.Acquired || !third.PreviousCalling {
		t.Fatalf("want a takeover that knows of the earlier call, got %+v, %v", third, err)
	}
	// The inherited flag survives this owner's own answered call.
	if err := a.MarkCalling(ctx, &third); err != nil {
		t.Fatal(err)
	}
	if err := a.MarkAnswered(ctx, &third); err != nil {
		t.Fatal(err)
	}
	if err := a.Release(ctx, &third); err != nil {
		t.Fatal(err)
	}
	fourth, err := b.Claim(ctx, "throttled", "job-1")
	if err != nil || !fourth.PreviousCalling {
		t.Fatalf("inherited calling flag was cleared: %+v, %v", fourth, err)
	}
}
