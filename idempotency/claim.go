package idempotency

import (
	"context"
	"encoding/json"
	"sync/atomic"
	"time"
)

// State says what Claim found for a key.
type State int

// The states of a Claim. The zero value is not a valid state, so an empty
// Claim never looks acquired.
const (
	// Acquired means this worker owns the key until its lease ends and may
	// call Graph (after MarkCalling).
	Acquired State = iota + 1
	// Done means the key was completed; the stored outcome answers the job.
	Done
	// Busy means another claim holds a live lease; wait with Await.
	Busy
)

// String returns the lowercase name of the state.
func (s State) String() string {
	switch s {
	case Acquired:
		return "acquired"
	case Done:
		return "done"
	case Busy:
		return "busy"
	default:
		return "unknown"
	}
}

// Claim is what Claim and Await found for a key. Its exported fields are a
// snapshot taken when it was returned; Renew and MarkCalling refresh
// LeaseUntil and Attempts.
//
// A Claim may be copied: copies of an acquired claim share one lease, and
// Renew, MarkCalling, Complete, Release and KeepAlive serialize on it, so
// they may be used from several goroutines. The exported fields are plain
// data, though: read and write them from one goroutine only (KeepAlive
// never touches them).
type Claim struct {
	// State is Acquired, Done or Busy.
	State State
	// Key is the idempotency key.
	Key string
	// Owner is the worker that holds the key (Acquired: this Store's owner;
	// Busy: the other holder) or that completed it (Done).
	Owner string
	// JobID is the job that holds the key or that completed it. For a Done
	// claim it is the job whose outcome is stored, which may differ from
	// the job that asked.
	JobID string
	// LeaseUntil is when the holder's lease ends (Acquired and Busy), by
	// the wall clock of the worker that wrote it.
	LeaseUntil time.Time
	// Attempts counts MarkCalling calls on the record by every owner so far.
	Attempts int

	// TakenOver is true for an Acquired claim that took the key from a
	// previous owner whose lease had expired or who released it while a
	// Graph call may have happened.
	TakenOver bool
	// PreviousOwner and PreviousJobID name the owner TakenOver took the key
	// from.
	PreviousOwner string
	PreviousJobID string
	// PreviousCalling is true when an earlier owner had called MarkCalling,
	// so Graph may already have executed the action: whatever this owner
	// learns from Graph, the outcome must be marked uncertain.
	PreviousCalling bool

	// Outcome is the result blob given to Complete (Done only).
	Outcome json.RawMessage
	// OutcomeStatus is the status given to Complete (Done only).
	OutcomeStatus string
	// CompletedAt is when Complete wrote the outcome (Done only).
	CompletedAt time.Time

	// requester is the job that asked, and arm whether it asked through
	// ClaimCalling, so that Await can claim for it the same way.
	requester string
	arm       bool
	// h is the lease of an acquired claim, nil otherwise.
	h *hold
}

// Lost reports whether the claim was acquired and has since been lost to
// another owner, as found by Renew, MarkCalling, Complete, Release or a
// KeepAlive renewal. It is safe for concurrent use.
func (c *Claim) Lost() bool {
	return c.h != nil && c.h.lost.Load()
}

// hold is the shared, mutable state of an acquired claim.
type hold struct {
	// sem is a one-slot lock that a waiter can abandon on ctx cancel.
	sem chan struct{}
	// key, kvKey and token never change.
	key, kvKey, token string
	// rev and rec are the revision and value this claim last wrote or
	// adopted; guarded by sem.
	rev uint64
	rec record
	// closed is set once the claim completed or released the key; guarded
	// by sem.
	closed bool
	// armed says the record is marked calling, and its attempt counted, for
	// a call not yet made (ClaimCalling before its first MarkCalling);
	// inherited that an earlier owner had marked it. Guarded by sem.
	armed, inherited bool
	lost             atomic.Bool
	// leaseUntil mirrors rec.LeaseUntil (UnixNano) for readers that must
	// not wait for sem.
	leaseUntil atomic.Int64
}

func newHold(kvKey string, rev uint64, rec record) *hold {
	h := &hold{sem: make(chan struct{}, 1), key: rec.Key, kvKey: kvKey, token: rec.Token, rev: rev, rec: rec}
	h.leaseUntil.Store(rec.LeaseUntil.UnixNano())
	return h
}

// HeldUntil is when this claim's lease ends as last confirmed by a write
// of ours (including KeepAlive's renewals); zero for a claim not acquired.
// Until then no other owner can take the key over (clocks agreeing), so a
// caller may act on the key without a round trip; after it, Renew first.
func (c *Claim) HeldUntil() time.Time {
	if c.h == nil {
		return time.Time{}
	}
	return time.Unix(0, c.h.leaseUntil.Load())
}

func (h *hold) lock(ctx context.Context) error {
	select {
	case h.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (h *hold) unlock() { <-h.sem }
