package idempotency_test

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/recoverpasscode/recoverpasscode/idempotency"
)

// A key bound by its first claim refuses a claim for another source or
// target in every state of its record (done, held, handed back after a
// call, expired), without writing; the same binding, a claim that binds
// nothing and a record written without a binding go on as before.
func TestBoundKeyRefusesAnotherSourceOrTarget(t *testing.T) {
	srv := startBucket(t)
	ctx := testCtx(t)
	kv, err := connect(t, srv).KeyValue(ctx, bucket)
	if err != nil {
		t.Fatal(err)
	}
	a := newStore(t, srv, "a", time.Minute)
	b := newStore(t, srv, "b", time.Minute)
	first := idempotency.Binding{Source: "ticketing", Target: "t/deviceManagement/managedDevices/d1/recoverPasscode"}
	otherTarget := idempotency.Binding{Source: "ticketing", Target: "t/deviceManagement/managedDevices/d2/recoverPasscode"}
	otherSource := idempotency.Binding{Source: "automation", Target: first.Target}

	// The record's states, each made by the first job (job-1) under a's
	// store.
	states := []struct {
		name string
		make func(t *testing.T, key string)
		// want is what a second claim with the same binding finds.
		want idempotency.State
	}{
		{"done", func(t *testing.T, key string) {
			c := acquireFor(t, a, key, "job-1", first)
			if err := c.Lease.Complete(ctx, "succeeded", []byte(`{"status":"succeeded"}`)); err != nil {
				t.Fatal(err)
			}
		}, idempotency.Done},
		{"held", func(t *testing.T, key string) { acquireFor(t, a, key, "job-1", first) }, idempotency.Busy},
		{"handed back after a call", func(t *testing.T, key string) {
			c := acquireFor(t, a, key, "job-1", first)
			if err := call(ctx, c, idempotency.Unknown); err != nil {
				t.Fatal(err)
			}
			if err := c.Lease.Release(ctx); err != nil {
				t.Fatal(err)
			}
		}, idempotency.Acquired},
		{"expired", func(t *testing.T, key string) {
			short := newStore(t, srv, "a", time.Millisecond)
			c := acquireFor(t, short, key, "job-1", first)
			eventually(t, time.Second, "the lease passes", func() bool { return time.Now().After(c.LeaseUntil) })
		}, idempotency.Acquired},
	}
	for _, st := range states {
		t.Run(st.name, func(t *testing.T) {
			key := "INC1/" + st.name
			st.make(t, key)
			before, takeovers := entry(t, kv, key), b.Stats().Takeovers
			for _, asked := range []idempotency.Binding{otherTarget, otherSource} {
				c, err := b.AcquireFor(ctx, key, "job-2", asked)
				var be *idempotency.BoundError
				if !errors.Is(err, idempotency.ErrBound) || !errors.As(err, &be) {
					t.Fatalf("AcquireFor %+v: %+v, %v; want ErrBound", asked, c, err)
				}
				if be.Key != key || be.JobID != "job-1" || be.Bound != first || be.Asked != asked {
					t.Errorf("BoundError %+v", be)
				}
			}
			if after := entry(t, kv, key); after.Revision() != before.Revision() {
				t.Errorf("a refused claim wrote the record: revision %d, was %d", after.Revision(), before.Revision())
			}
			if got := b.Stats().Takeovers - takeovers; got != 0 {
				t.Errorf("%d takeovers for refused claims", got)
			}
			c, err := b.AcquireFor(ctx, key, "job-3", first)
			if err != nil || c.State != st.want {
				t.Fatalf("the same binding again: %+v, %v; want %s", c, err, st.want)
			}
			if c.Lease != nil {
				if err := c.Lease.Release(ctx); err != nil {
					t.Fatal(err)
				}
			}
		})
	}

	t.Run("a takeover keeps the binding", func(t *testing.T) {
		const key = "INC1/takeover"
		short := newStore(t, srv, "a", time.Millisecond)
		c := acquireFor(t, short, key, "job-1", first)
		eventually(t, time.Second, "the lease passes", func() bool { return time.Now().After(c.LeaseUntil) })
		next := acquireFor(t, b, key, "job-2", idempotency.Binding{})
		if !next.TakenOver {
			t.Fatalf("no takeover: %+v", next)
		}
		if _, err := a.AcquireFor(ctx, key, "job-3", otherTarget); !errors.Is(err, idempotency.ErrBound) {
			t.Errorf("after a takeover by a claim without binding: %v, want ErrBound", err)
		}
	})

	t.Run("a claim without binding", func(t *testing.T) {
		const key = "INC1/unbound claim"
		c := acquireFor(t, a, key, "job-1", first)
		if err := c.Lease.Complete(ctx, "succeeded", []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
		if got, err := b.Acquire(ctx, key, "job-2"); err != nil || got.State != idempotency.Done {
			t.Errorf("Acquire: %+v, %v; want done", got, err)
		}
	})

	t.Run("a record written without binding", func(t *testing.T) {
		// As a worker from before keys were bound wrote it.
		const key = "INC1/old record"
		c, err := a.Acquire(ctx, key, "job-1")
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Lease.Complete(ctx, "succeeded", []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
		for _, asked := range []idempotency.Binding{first, otherTarget, otherSource} {
			if got, err := b.AcquireFor(ctx, key, "job-2", asked); err != nil || got.State != idempotency.Done {
				t.Errorf("AcquireFor %+v: %+v, %v; want done", asked, got, err)
			}
		}
		// Taken over once expired, it is bound from then on.
		const expired = "INC1/old expired record"
		short := newStore(t, srv, "a", time.Millisecond)
		old, err := short.Acquire(ctx, expired, "job-1")
		if err != nil {
			t.Fatal(err)
		}
		eventually(t, time.Second, "the lease passes", func() bool { return time.Now().After(old.LeaseUntil) })
		if got := acquireFor(t, b, expired, "job-2", otherTarget); !got.TakenOver {
			t.Fatalf("no takeover: %+v", got)
		}
		var rec map[string]any
		if err := json.Unmarshal(entry(t, kv, expired).Value(), &rec); err != nil {
			t.Fatal(err)
		}
		if rec["source"] != otherTarget.Source || rec["target"] != otherTarget.Target {
			t.Errorf("record after the takeover: %v", rec)
		}
	})
}

// A waiter whose key's record is replaced by one bound elsewhere (the key
// was freed and another job's claim took it) stops waiting with ErrBound.
func TestAwaitEndsOnARecordBoundElsewhere(t *testing.T) {
	srv := startBucket(t)
	ctx := testCtx(t)
	kv, err := connect(t, srv).KeyValue(ctx, bucket)
	if err != nil {
		t.Fatal(err)
	}
	a := newStore(t, srv, "a", time.Minute)
	b := newStore(t, srv, "b", time.Minute)
	mine := idempotency.Binding{Source: "ticketing", Target: "t/d1"}
	const key = "INC2"
	acquireFor(t, a, key, "job-1", mine)
	busy, err := b.AcquireFor(ctx, key, "job-2", mine)
	if err != nil || busy.State != idempotency.Busy {
		t.Fatalf("AcquireFor: %+v, %v; want busy", busy, err)
	}
	waited := awaitAsync(ctx, b, busy)
	// The record becomes another job's, done for another target.
	e := entry(t, kv, key)
	var rec map[string]any
	if err := json.Unmarshal(e.Value(), &rec); err != nil {
		t.Fatal(err)
	}
	rec["jobId"], rec["target"], rec["phase"] = "job-9", "t/d9", "done"
	data, err := json.Marshal(rec)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Update(ctx, idempotency.KVKey(key), data, e.Revision()); err != nil {
		t.Fatal(err)
	}
	r := receive(t, waited, 5*time.Second)
	var be *idempotency.BoundError
	if !errors.As(r.err, &be) || !errors.Is(r.err, idempotency.ErrBound) || be.JobID != "job-9" || be.Bound.Target != "t/d9" {
		t.Fatalf("Await: %+v, %v; want a BoundError naming job-9", r.claim, r.err)
	}
}

func acquireFor(tb testing.TB, s *idempotency.Store, key, jobID string, b idempotency.Binding) idempotency.Claim {
	tb.Helper()
	c, err := s.AcquireFor(testCtx(tb), key, jobID, b)
	if err != nil || c.State != idempotency.Acquired {
		tb.Fatalf("AcquireFor %q for %s: %+v, %v; want acquired", key, jobID, c, err)
	}
	return c
}

func entry(tb testing.TB, kv jetstream.KeyValue, key string) jetstream.KeyValueEntry {
	tb.Helper()
	e, err := kv.Get(testCtx(tb), idempotency.KVKey(key))
	if err != nil {
		tb.Fatalf("get %q: %v", key, err)
	}
	return e
}
