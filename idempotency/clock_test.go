package idempotency_test

import (
	"testing"
	"time"

	"github.com/recoverpasscode/recoverpasscode/clock"
	"github.com/recoverpasscode/recoverpasscode/devserver"
	"github.com/recoverpasscode/recoverpasscode/idempotency"
)

// skewedStore is a worker whose own clock is off by skew, given a Clock
// that corrects it to the server's.
func skewedStore(tb testing.TB, srv *devserver.Server, owner string, lease, skew time.Duration) *idempotency.Store {
	tb.Helper()
	kv, err := connect(tb, srv).KeyValue(testCtx(tb), bucket)
	if err != nil {
		tb.Fatalf("bind bucket: %v", err)
	}
	clk, err := clock.New(clock.Config{KV: kv, Key: clock.Key(owner), Local: func() time.Time { return time.Now().Add(skew) }})
	if err != nil {
		tb.Fatal(err)
	}
	return idempotency.New(kv, idempotency.Config{Owner: owner, Lease: lease, Clock: clk})
}

// TestSkewedClocksDoNotTakeOverEarly: an owner whose clock runs 2 s behind
// holds a 3 s lease; a worker whose clock runs 2 s ahead finds it live, as
// the server's clock says it is, though by the two clocks read raw it
// would have ended a second before it began. Once it has really ended the
// key is taken over.
func TestSkewedClocksDoNotTakeOverEarly(t *testing.T) {
	srv := startBucket(t)
	const lease = 3 * time.Second
	slow := skewedStore(t, srv, "slow", lease, -2*time.Second)
	fast := skewedStore(t, srv, "fast", lease, 2*time.Second)
	held, err := slow.Acquire(testCtx(t), "skewed", "job-1")
	if err != nil || held.State != idempotency.Acquired {
		t.Fatalf("acquire: %v, %v", held.State, err)
	}
	started := time.Now()
	c, err := fast.Acquire(testCtx(t), "skewed", "job-2")
	if err != nil {
		t.Fatal(err)
	}
	if c.State != idempotency.Busy {
		t.Fatalf("the fast clock's Acquire %s after the claim: %s, want Busy (a live lease taken over early)", time.Since(started), c.State)
	}
	c, err = fast.Await(testCtx(t), c)
	if err != nil {
		t.Fatal(err)
	}
	if waited := time.Since(started); c.State != idempotency.Acquired || !c.TakenOver || waited < lease-time.Second {
		t.Errorf("Await: %s (taken over %v) after %s, want the key taken over once the %s lease ended", c.State, c.TakenOver, waited, lease)
	}
}
