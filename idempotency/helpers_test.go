package idempotency_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/recoverpasscode/recoverpasscode/devserver"
	"github.com/recoverpasscode/recoverpasscode/devserver/devservertest"
	"github.com/recoverpasscode/recoverpasscode/idempotency"
)

const bucket = "recoverpasscode_keys"

// testCtx bounds a test so that a hang fails instead of stalling CI.
func testCtx(tb testing.TB) context.Context {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	tb.Cleanup(cancel)
	return ctx
}

// startBucket starts a server and creates the bucket with BucketConfig.
func startBucket(tb testing.TB) *devserver.Server {
	tb.Helper()
	srv := devservertest.Start(tb)
	js := connect(tb, srv)
	if _, err := js.CreateKeyValue(testCtx(tb), idempotency.BucketConfig(bucket, 0, 1)); err != nil {
		tb.Fatalf("create bucket: %v", err)
	}
	return srv
}

// connect opens a NATS connection of its own, as a separate worker would.
func connect(tb testing.TB, srv *devserver.Server) jetstream.JetStream {
	tb.Helper()
	nc, err := nats.Connect(srv.URL())
	if err != nil {
		tb.Fatalf("connect: %v", err)
	}
	tb.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		tb.Fatalf("jetstream: %v", err)
	}
	return js
}

// newStore is a worker: its own connection, owner name and lease.
func newStore(tb testing.TB, srv *devserver.Server, owner string, lease time.Duration) *idempotency.Store {
	tb.Helper()
	kv, err := connect(tb, srv).KeyValue(testCtx(tb), bucket)
	if err != nil {
		tb.Fatalf("bind bucket: %v", err)
	}
	return idempotency.New(kv, idempotency.Config{Owner: owner, Lease: lease})
}

// mustClaim claims key and fails the test unless the state is want.
func mustClaim(tb testing.TB, s *idempotency.Store, key, jobID string, want idempotency.State) idempotency.Claim {
	tb.Helper()
	c, err := s.Claim(testCtx(tb), key, jobID)
	if err != nil {
		tb.Fatalf("claim %q for %s: %v", key, jobID, err)
	}
	if c.State != want {
		tb.Fatalf("claim %q for %s: state %s, want %s (owner %s, job %s)", key, jobID, c.State, want, c.Owner, c.JobID)
	}
	return c
}

// call makes a call under c's lease that ends with fate, as a job's Graph
// call would, and fails the test if the lease ran the call although it
// returned an error.
func call(ctx context.Context, c idempotency.Claim, fate idempotency.Fate) error {
	ran := false
	got, err := c.Lease.Call(ctx, nil, func(context.Context) idempotency.Fate {
		ran = true
		return fate
	})
	switch {
	case err != nil && (ran || got != idempotency.NotCalled):
		return fmt.Errorf("call ran (%v) or reported %s despite %w", ran, got, err)
	case err == nil && (!ran || got != fate):
		return fmt.Errorf("call ran %v and reported %s, want it run and %s", ran, got, fate)
	}
	return err
}

// awaitResult is what a background Await returned.
type awaitResult struct {
	claim idempotency.Claim
	err   error
	at    time.Time
}

// awaitAsync runs Await in the background.
func awaitAsync(ctx context.Context, s *idempotency.Store, c idempotency.Claim) <-chan awaitResult {
	ch := make(chan awaitResult, 1)
	go func() {
		got, err := s.Await(ctx, c)
		ch <- awaitResult{got, err, time.Now()}
	}()
	return ch
}

// receive waits for a background Await, failing the test after limit.
func receive(tb testing.TB, ch <-chan awaitResult, limit time.Duration) awaitResult {
	tb.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(limit):
		tb.Fatalf("Await did not return within %s", limit)
		return awaitResult{}
	}
}

// eventually waits for cond, checking it at short intervals, up to limit.
func eventually(tb testing.TB, limit time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("%s: not within %s", what, limit)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
