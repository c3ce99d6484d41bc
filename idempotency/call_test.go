package idempotency_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/recoverpasscode/recoverpasscode/idempotency"
)

// Call confirms the lease between the wait and the call: a lease that ran
// out meanwhile (KeepAlive could not renew it) and was taken over is found
// out before calling, even on the first Call, whose mark costs no write.
func TestCallFindsALostLeaseBeforeCalling(t *testing.T) {
	srv := startBucket(t)
	ctx := testCtx(t)
	a := newStore(t, srv, "worker-a", 300*time.Millisecond)
	b := newStore(t, srv, "worker-b", time.Minute)

	c, err := a.Acquire(ctx, "key", "job-1")
	if err != nil || c.State != idempotency.Acquired {
		t.Fatalf("acquire: %+v, %v", c, err)
	}
	busy := mustClaim(t, b, "key", "job-2", idempotency.Busy)
	if next, err := b.Await(ctx, busy); err != nil || !next.TakenOver {
		t.Fatalf("takeover: %+v, %v", next, err)
	}
	fate, err := c.Lease.Call(ctx, nil, func(context.Context) idempotency.Fate {
		t.Error("called under a lease another worker took over")
		return idempotency.Acted
	})
	if !errors.Is(err, idempotency.ErrLost) || fate != idempotency.NotCalled || !c.Lease.Lost() {
		t.Errorf("Call on a lost lease = %s, %v (lost %v); want not called, ErrLost", fate, err, c.Lease.Lost())
	}
}

// A lease that would end within one keep-alive interval is renewed before
// the call, and only then.
func TestCallRenewsALeaseAboutToEnd(t *testing.T) {
	srv := startBucket(t)
	ctx := testCtx(t)
	a := newStore(t, srv, "worker-a", time.Minute)
	for _, tc := range []struct {
		name      string
		every     time.Duration // the keep-alive interval
		wantWrite bool
	}{
		{"a minute's lease, renewed every 20s: call at once", 20 * time.Second, false},
		{"a minute's lease, renewed every hour: renew first", time.Hour, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := a.Acquire(ctx, tc.name, "job-1")
			if err != nil || c.State != idempotency.Acquired {
				t.Fatalf("acquire: %+v, %v", c, err)
			}
			stop := c.Lease.KeepAlive(ctx, tc.every)
			defer stop()
			held, before := c.Lease.HeldUntil(), a.Stats().Updates
			if err := call(ctx, c, idempotency.Acted); err != nil {
				t.Fatal(err)
			}
			wrote := a.Stats().Updates > before
			if wrote != tc.wantWrite || c.Lease.HeldUntil().After(held) != tc.wantWrite {
				t.Errorf("renewed: wrote %v, lease moved from %s to %s; want a renewal: %v", wrote, held, c.Lease.HeldUntil(), tc.wantWrite)
			}
		})
	}
}

// Complete and Release go on when the job's context is cancelled (a drain
// that timed out): the outcome of a call that acted must still be stored,
// and a handed-back key freed at once.
func TestCompleteAndReleaseOutliveCancellation(t *testing.T) {
	srv := startBucket(t)
	a := newStore(t, srv, "worker-a", time.Minute)
	b := newStore(t, srv, "worker-b", time.Minute)
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()

	done, err := a.Acquire(testCtx(t), "completed", "job-1")
	if err != nil {
		t.Fatal(err)
	}
	if err := call(testCtx(t), done, idempotency.Acted); err != nil {
		t.Fatal(err)
	}
	if err := done.Lease.Complete(cancelled, "succeeded", []byte(`{}`)); err != nil {
		t.Errorf("Complete with a cancelled context: %v", err)
	}
	mustClaim(t, b, "completed", "job-2", idempotency.Done)

	released, err := a.Acquire(testCtx(t), "released", "job-1")
	if err != nil {
		t.Fatal(err)
	}
	if err := released.Lease.Release(cancelled); err != nil {
		t.Errorf("Release with a cancelled context: %v", err)
	}
	mustClaim(t, b, "released", "job-2", idempotency.Acquired)
}
