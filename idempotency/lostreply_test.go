package idempotency_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/recoverpasscode/recoverpasscode/idempotency"
)

// lostReplyKV performs writes on a real bucket but, while drop is set,
// reports a timeout afterwards, as when the server's reply is lost.
type lostReplyKV struct {
	jetstream.KeyValue
	drop atomic.Bool
}

var errReplyLost = errors.New("test: reply lost")

func (kv *lostReplyKV) Update(ctx context.Context, key string, value []byte, rev uint64) (uint64, error) {
	n, err := kv.KeyValue.Update(ctx, key, value, rev)
	if err == nil && kv.drop.Load() {
		return 0, errReplyLost
	}
	return n, err
}

func (kv *lostReplyKV) Delete(ctx context.Context, key string, opts ...jetstream.KVDeleteOpt) error {
	err := kv.KeyValue.Delete(ctx, key, opts...)
	if err == nil && kv.drop.Load() {
		return errReplyLost
	}
	return err
}

// TestLostReplies shows that an owner whose write landed without a reply
// recognises its own record on the next try instead of reporting ErrLost.
func TestLostReplies(t *testing.T) {
	srv := startBucket(t)
	base, err := connect(t, srv).KeyValue(testCtx(t), bucket)
	if err != nil {
		t.Fatal(err)
	}
	kv := &lostReplyKV{KeyValue: base}
	// Complete writes once, so that the test sees each try.
	a := idempotency.New(kv, idempotency.Config{Owner: "worker-a", Lease: time.Minute, OutcomeRetry: -1})
	b := newStore(t, srv, "worker-b", time.Minute)
	ctx := testCtx(t)

	// retry runs op once with the reply lost, then again normally.
	retry := func(t *testing.T, name string, op func() error) {
		t.Helper()
		kv.drop.Store(true)
		if err := op(); !errors.Is(err, errReplyLost) {
			t.Fatalf("%s with the reply lost = %v, want the transport error", name, err)
		}
		kv.drop.Store(false)
		if err := op(); err != nil {
			t.Fatalf("%s again: %v", name, err)
		}
	}

	t.Run("mark calling and complete", func(t *testing.T) {
		c := mustClaim(t, a, "complete", "job-1", idempotency.Acquired)
		retry(t, "Call's mark", func() error { return call(ctx, c, idempotency.Acted) })
		if c.Lease.Attempts() != 2 {
			// The retried mark counts again: more attempts, never fewer.
			t.Errorf("attempts = %d, want 2", c.Lease.Attempts())
		}
		retry(t, "Complete", func() error { return c.Lease.Complete(ctx, "succeeded", []byte(`{}`)) })
		if c.Lease.Lost() {
			t.Error("claim reported lost")
		}
		mustClaim(t, b, "complete", "job-2", idempotency.Done)
	})
	t.Run("release by delete", func(t *testing.T) {
		c := mustClaim(t, a, "release", "job-1", idempotency.Acquired)
		retry(t, "Release", func() error { return c.Lease.Release(ctx) })
		mustClaim(t, b, "release", "job-2", idempotency.Acquired)
	})
	t.Run("complete retries by itself", func(t *testing.T) {
		retrying := idempotency.New(kv, idempotency.Config{Owner: "worker-a", Lease: time.Minute})
		c, err := retrying.Acquire(ctx, "retried", "job-1")
		if err != nil || c.State != idempotency.Acquired {
			t.Fatalf("acquire: %+v, %v", c, err)
		}
		kv.drop.Store(true)
		defer kv.drop.Store(false)
		if err := c.Lease.Complete(ctx, "succeeded", []byte(`{}`)); err != nil {
			t.Fatalf("Complete with the first reply lost = %v, want its retry to find its own write", err)
		}
		mustClaim(t, b, "retried", "job-2", idempotency.Done)
	})
}
