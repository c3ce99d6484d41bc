package idempotency_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/recoverpasscode/recoverpasscode/idempotency"
)

func TestAwaitReturnsDoneWithoutPolling(t *testing.T) {
	srv := startBucket(t)
	a := newStore(t, srv, "worker-a", time.Minute)
	b := newStore(t, srv, "worker-b", time.Minute)
	ctx := testCtx(t)

	ca := mustClaim(t, a, "key", "job-1", idempotency.Acquired)
	busy := mustClaim(t, b, "key", "job-2", idempotency.Busy)
	before := b.Stats()
	result := awaitAsync(ctx, b, busy)
	eventually(t, 5*time.Second, "await starts watching", func() bool { return b.Stats().Watches > before.Watches })

	// The holder renews a few times and takes a while, as a Graph call
	// would; a polling Await would show up in b's operation count.
	for range 3 {
		if err := ca.Lease.Renew(ctx); err != nil {
			t.Fatalf("renew: %v", err)
		}
	}
	<-time.After(300 * time.Millisecond)
	if err := ca.Lease.Complete(ctx, "succeeded", []byte(`{"n":1}`)); err != nil {
		t.Fatalf("complete: %v", err)
	}
	completed := time.Now()

	r := receive(t, result, 5*time.Second)
	if r.err != nil {
		t.Fatalf("await: %v", r.err)
	}
	if r.claim.State != idempotency.Done || string(r.claim.Outcome) != `{"n":1}` || r.claim.JobID != "job-1" {
		t.Fatalf("await = %+v, want Done with job-1's outcome", r.claim)
	}
	if lag := r.at.Sub(completed); lag > time.Second {
		t.Errorf("Await returned %s after Complete, want well under a second", lag)
	}
	ops := b.Stats().Ops() - before.Ops()
	if ops != 1 {
		t.Errorf("Await used %d KV operations, want 1 (the watch): %+v", ops, b.Stats())
	}
}

func TestAwaitClaimsReleasedKey(t *testing.T) {
	srv := startBucket(t)
	a := newStore(t, srv, "worker-a", time.Minute)
	b := newStore(t, srv, "worker-b", time.Minute)
	ctx := testCtx(t)

	ca := mustClaim(t, a, "key", "job-1", idempotency.Acquired)
	busy := mustClaim(t, b, "key", "job-2", idempotency.Busy)
	result := awaitAsync(ctx, b, busy)
	eventually(t, 5*time.Second, "await starts watching", func() bool { return b.Stats().Watches == 1 })
	if err := ca.Lease.Release(ctx); err != nil {
		t.Fatalf("release: %v", err)
	}

	r := receive(t, result, 5*time.Second)
	if r.err != nil {
		t.Fatalf("await: %v", r.err)
	}
	if r.claim.State != idempotency.Acquired || r.claim.JobID != "job-2" || r.claim.TakenOver {
		t.Fatalf("await = %+v, want a fresh Acquired claim for job-2", r.claim)
	}
	if err := r.claim.Lease.Complete(ctx, "succeeded", nil); err != nil {
		t.Fatalf("complete the awaited claim: %v", err)
	}
}

func TestAwaitReturnsOnContextEnd(t *testing.T) {
	for _, tc := range []struct {
		name      string
		ctx       func() (context.Context, context.CancelFunc)
		cancelNow bool
		want      error
	}{
		{"cancel", func() (context.Context, context.CancelFunc) {
			return context.WithCancel(context.Background())
		}, true, context.Canceled},
		{"deadline", func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), 300*time.Millisecond)
		}, false, context.DeadlineExceeded},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := startBucket(t)
			a := newStore(t, srv, "worker-a", time.Minute)
			b := newStore(t, srv, "worker-b", time.Minute)
			mustClaim(t, a, "key", "job-1", idempotency.Acquired)
			busy := mustClaim(t, b, "key", "job-2", idempotency.Busy)

			ctx, cancel := tc.ctx()
			defer cancel()
			result := awaitAsync(ctx, b, busy)
			eventually(t, 5*time.Second, "await starts watching", func() bool { return b.Stats().Watches == 1 })
			if tc.cancelNow {
				cancel()
			}
			<-ctx.Done()
			ended := time.Now()

			r := receive(t, result, 5*time.Second)
			if !errors.Is(r.err, tc.want) {
				t.Fatalf("await error = %v, want %v", r.err, tc.want)
			}
			if lag := r.at.Sub(ended); lag > 500*time.Millisecond {
				t.Errorf("Await returned %s after the context ended", lag)
			}
		})
	}
}

func TestKeepAlive(t *testing.T) {
	srv := startBucket(t)
	const lease = time.Second
	a := newStore(t, srv, "worker-a", lease)
	b := newStore(t, srv, "worker-b", time.Minute)
	ctx := testCtx(t)

	ca := mustClaim(t, a, "key", "job-1", idempotency.Acquired)
	stop := ca.Lease.KeepAlive(ctx, lease/10)
	busy := mustClaim(t, b, "key", "job-2", idempotency.Busy)

	// Through more than two leases the key stays a's, and b only watches.
	wctx, cancel := context.WithTimeout(ctx, 2500*time.Millisecond)
	defer cancel()
	before := b.Stats()
	if got, err := b.Await(wctx, busy); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("await while kept alive = %+v, %v; want the deadline to pass", got, err)
	}
	if ops := b.Stats().Ops() - before.Ops(); ops != 1 {
		t.Errorf("Await used %d KV operations while the holder renewed, want 1", ops)
	}
	stop()
	stop()
	if ca.Lease.Lost() {
		t.Fatal("claim lost while kept alive")
	}

	// Without renewals the lease passes and b takes over.
	cb, err := b.Await(ctx, busy)
	if err != nil || cb.State != idempotency.Acquired || !cb.TakenOver {
		t.Fatalf("await after stop = %+v, %v; want a takeover", cb, err)
	}

	// a's next renewal finds the key lost and stops by itself.
	stop = ca.Lease.KeepAlive(ctx, 10*time.Millisecond)
	defer stop()
	eventually(t, 5*time.Second, "keep-alive notices the lost claim", ca.Lease.Lost)
}
