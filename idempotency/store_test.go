package idempotency_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/recoverpasscode/recoverpasscode/idempotency"
)

func TestClaimCompleteReplay(t *testing.T) {
	srv := startBucket(t)
	a := newStore(t, srv, "worker-a", 30*time.Second)
	b := newStore(t, srv, "worker-b", 30*time.Second)
	ctx := testCtx(t)
	const key = "INC0012345/2d6a0c1e"

	c := mustClaim(t, a, key, "job-1", idempotency.Acquired)
	if c.Owner != "worker-a" || c.JobID != "job-1" || c.Key != key || c.TakenOver || c.Attempts != 0 {
		t.Fatalf("acquired claim = %+v", c)
	}
	if err := call(ctx, c, idempotency.Acted); err != nil {
		t.Fatalf("call: %v", err)
	}
	if c.Lease.Attempts() != 1 {
		t.Fatalf("attempts after a Call = %d, want 1", c.Lease.Attempts())
	}
	outcome := []byte(`{"status":"succeeded","graph":{"status":204}}`)
	if err := c.Lease.Complete(ctx, "succeeded", outcome); err != nil {
		t.Fatalf("complete: %v", err)
	}

	for _, tc := range []struct {
		name  string
		store *idempotency.Store
		job   string
	}{
		{"another worker, new job", b, "job-2"},
		{"same worker, redelivery", a, "job-1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := mustClaim(t, tc.store, key, tc.job, idempotency.Done)
			if string(d.Outcome) != string(outcome) || d.OutcomeStatus != "succeeded" {
				t.Errorf("outcome = %s %s, want %s succeeded", d.OutcomeStatus, d.Outcome, outcome)
			}
			if d.JobID != "job-1" || d.Owner != "worker-a" || d.Attempts != 1 || d.CompletedAt.IsZero() {
				t.Errorf("done claim = %+v", d)
			}
		})
	}

	if err := c.Lease.Renew(ctx); !errors.Is(err, idempotency.ErrNotHeld) {
		t.Errorf("Renew after Complete = %v, want ErrNotHeld", err)
	}
	if err := c.Lease.Complete(ctx, "succeeded", outcome); !errors.Is(err, idempotency.ErrNotHeld) {
		t.Errorf("second Complete = %v, want ErrNotHeld", err)
	}
}

func TestClaimBusy(t *testing.T) {
	srv := startBucket(t)
	a := newStore(t, srv, "worker-a", 30*time.Second)
	b := newStore(t, srv, "worker-b", 30*time.Second)
	held := mustClaim(t, a, "key", "job-1", idempotency.Acquired)

	for _, tc := range []struct {
		name  string
		store *idempotency.Store
	}{
		{"another worker", b},
		// Two goroutines of one worker must not both own a key either.
		{"the same worker", a},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := mustClaim(t, tc.store, "key", "job-2", idempotency.Busy)
			if c.Owner != "worker-a" || c.JobID != "job-1" || !c.LeaseUntil.Equal(held.LeaseUntil) {
				t.Errorf("busy claim = %+v, want holder worker-a/job-1 until %s", c, held.LeaseUntil)
			}
			if err := c.Lease.Renew(testCtx(t)); !errors.Is(err, idempotency.ErrNotHeld) {
				t.Errorf("Renew of a busy claim = %v, want ErrNotHeld", err)
			}
		})
	}
}

func TestTakeoverAfterLeaseExpiry(t *testing.T) {
	for _, tc := range []struct {
		name         string
		markCalling  bool
		wantAttempts int
	}{
		{"before any call", false, 0},
		{"after a call", true, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := startBucket(t)
			a := newStore(t, srv, "worker-a", 300*time.Millisecond)
			b := newStore(t, srv, "worker-b", 30*time.Second)
			ctx := testCtx(t)

			ca := mustClaim(t, a, "key", "job-1", idempotency.Acquired)
			if tc.markCalling {
				if err := call(ctx, ca, idempotency.Unknown); err != nil {
					t.Fatalf("call: %v", err)
				}
			}
			busy := mustClaim(t, b, "key", "job-2", idempotency.Busy)
			cb, err := b.Await(ctx, busy)
			if err != nil {
				t.Fatalf("await: %v", err)
			}
			if cb.State != idempotency.Acquired || !cb.TakenOver || cb.JobID != "job-2" {
				t.Fatalf("await = %+v, want an acquired takeover for job-2", cb)
			}
			if cb.PreviousOwner != "worker-a" || cb.PreviousJobID != "job-1" ||
				cb.PreviousCalling != tc.markCalling || cb.Attempts != tc.wantAttempts {
				t.Errorf("takeover = %+v, want previous worker-a/job-1 calling=%v attempts=%d",
					cb, tc.markCalling, tc.wantAttempts)
			}
			if got := b.Stats().Takeovers; got != 1 {
				t.Errorf("takeovers = %d, want 1", got)
			}

			// The old owner finds out on its next write, whatever it is.
			if err := ca.Lease.Renew(ctx); !errors.Is(err, idempotency.ErrLost) {
				t.Errorf("Renew after takeover = %v, want ErrLost", err)
			}
			if !ca.Lease.Lost() {
				t.Error("Lost() = false after ErrLost")
			}
			if err := call(ctx, ca, idempotency.Unknown); !errors.Is(err, idempotency.ErrLost) {
				t.Errorf("Call after takeover = %v, want ErrLost (and no call)", err)
			}
			if err := ca.Lease.Complete(ctx, "succeeded", nil); !errors.Is(err, idempotency.ErrLost) {
				t.Errorf("Complete after takeover = %v, want ErrLost", err)
			}

			if err := cb.Lease.Complete(ctx, "succeeded", []byte(`{"by":"b"}`)); err != nil {
				t.Fatalf("complete by the new owner: %v", err)
			}
			d := mustClaim(t, a, "key", "job-3", idempotency.Done)
			if string(d.Outcome) != `{"by":"b"}` {
				t.Errorf("outcome = %s, want the new owner's", d.Outcome)
			}
		})
	}
}

func TestRelease(t *testing.T) {
	for _, tc := range []struct {
		name        string
		markCalling bool
	}{
		{"without a call: record deleted", false},
		{"after a call: lease expired, calling kept", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := startBucket(t)
			// A long lease proves that Release, not expiry, frees the key.
			a := newStore(t, srv, "worker-a", time.Minute)
			b := newStore(t, srv, "worker-b", time.Minute)
			ctx := testCtx(t)

			ca := mustClaim(t, a, "key", "job-1", idempotency.Acquired)
			if tc.markCalling {
				if err := call(ctx, ca, idempotency.Unknown); err != nil {
					t.Fatalf("call: %v", err)
				}
			}
			if err := ca.Lease.Release(ctx); err != nil {
				t.Fatalf("release: %v", err)
			}
			if err := ca.Lease.Release(ctx); !errors.Is(err, idempotency.ErrNotHeld) {
				t.Errorf("second Release = %v, want ErrNotHeld", err)
			}
			if ca.Lease.Lost() {
				t.Error("a released claim reports Lost")
			}

			cb := mustClaim(t, b, "key", "job-1", idempotency.Acquired)
			if cb.TakenOver != tc.markCalling || cb.PreviousCalling != tc.markCalling {
				t.Errorf("claim after release: TakenOver=%v PreviousCalling=%v, want both %v",
					cb.TakenOver, cb.PreviousCalling, tc.markCalling)
			}
			if tc.markCalling && (cb.PreviousOwner != "worker-a" || cb.Attempts != 1) {
				t.Errorf("claim after release = %+v, want previous owner worker-a and 1 attempt", cb)
			}
		})
	}
}

func TestCompleteRejectsBadOutcome(t *testing.T) {
	srv := startBucket(t)
	a := newStore(t, srv, "worker-a", time.Minute)
	ctx := testCtx(t)
	c := mustClaim(t, a, "key", "job-1", idempotency.Acquired)

	for _, tc := range []struct {
		name    string
		status  string
		outcome []byte
	}{
		{"not JSON", "succeeded", []byte("{")},
		{"empty status", "", []byte(`{}`)},
		{"too large", "succeeded", []byte(`"` + strings.Repeat("a", idempotency.MaxOutcomeLen) + `"`)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := c.Lease.Complete(ctx, tc.status, tc.outcome); err == nil {
				t.Fatal("Complete succeeded")
			}
		})
	}
	// The claim survives a refused outcome.
	if err := c.Lease.Complete(ctx, "failed", nil); err != nil {
		t.Fatalf("complete without an outcome: %v", err)
	}
	d := mustClaim(t, a, "key", "job-2", idempotency.Done)
	if d.OutcomeStatus != "failed" || d.Outcome != nil {
		t.Errorf("done = %s %s, want failed with no outcome", d.OutcomeStatus, d.Outcome)
	}
}

func TestRecordIsReadableByOperators(t *testing.T) {
	srv := startBucket(t)
	a := newStore(t, srv, "worker-a", time.Minute)
	const key = "INC0012345/2d6a"
	c := mustClaim(t, a, key, "job-1", idempotency.Acquired)
	if err := call(testCtx(t), c, idempotency.Acted); err != nil {
		t.Fatal(err)
	}

	kv, err := connect(t, srv).KeyValue(testCtx(t), bucket)
	if err != nil {
		t.Fatal(err)
	}
	e, err := kv.Get(testCtx(t), idempotency.KVKey(key))
	if err != nil {
		t.Fatalf("get %s: %v", idempotency.KVKey(key), err)
	}
	var rec map[string]any
	if err := json.Unmarshal(e.Value(), &rec); err != nil {
		t.Fatal(err)
	}
	for field, want := range map[string]any{
		"key": key, "phase": "claimed", "owner": "worker-a", "jobId": "job-1", "calling": true, "attempts": 1.0,
	} {
		if rec[field] != want {
			t.Errorf("record[%q] = %v, want %v (record %s)", field, rec[field], want, e.Value())
		}
	}
}
