package idempotency_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/recoverpasscode/recoverpasscode/idempotency"
)

// BenchmarkClaimComplete measures what the record costs one job against a
// real embedded server: a claim of a new key without the mark, the Call
// that marks it around the Graph call, Complete with the outcome; and the
// same with Acquire, which marks in the claim's write, as the job handler
// does it.
func BenchmarkClaimComplete(b *testing.B) {
	b.Run("claim", func(b *testing.B) { benchClaimComplete(b, (*idempotency.Store).Claim) })
	b.Run("claimcalling", func(b *testing.B) { benchClaimComplete(b, (*idempotency.Store).Acquire) })
}

func benchClaimComplete(b *testing.B, claim func(*idempotency.Store, context.Context, string, string) (idempotency.Claim, error)) {
	srv := startBucket(b)
	s := newStore(b, srv, "bench", 30*time.Second)
	ctx := testCtx(b)
	outcome := []byte(`{"status":"succeeded","graph":{"status":204,"requestId":"5f0e8c1a-2b3c-4d5e-8f90-a1b2c3d4e5f6"}}`)
	before, jobs := s.Stats(), 0
	for b.Loop() {
		key := "bench/" + strconv.Itoa(jobs)
		c, err := claim(s, ctx, key, key)
		if err != nil || c.State != idempotency.Acquired {
			b.Fatalf("claim: %v %s", err, c.State)
		}
		if err := call(ctx, c, idempotency.Acted); err != nil {
			b.Fatal(err)
		}
		if err := c.Lease.Complete(ctx, "succeeded", outcome); err != nil {
			b.Fatal(err)
		}
		jobs++
	}
	b.ReportMetric(float64(s.Stats().Ops()-before.Ops())/float64(jobs), "kvops/op")
}

// BenchmarkClaimReplay measures a job answered from a completed record.
func BenchmarkClaimReplay(b *testing.B) {
	srv := startBucket(b)
	s := newStore(b, srv, "bench", 30*time.Second)
	ctx := testCtx(b)
	c, err := s.Claim(ctx, "replayed", "job-1")
	if err != nil {
		b.Fatal(err)
	}
	if err := c.Lease.Complete(ctx, "succeeded", []byte(`{}`)); err != nil {
		b.Fatal(err)
	}
	before, jobs := s.Stats(), 0
	for b.Loop() {
		d, err := s.Claim(ctx, "replayed", "job-2")
		if err != nil || d.State != idempotency.Done {
			b.Fatalf("claim: %v %s", err, d.State)
		}
		jobs++
	}
	b.ReportMetric(float64(s.Stats().Ops()-before.Ops())/float64(jobs), "kvops/op")
}
