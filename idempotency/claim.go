package idempotency

import (
	"encoding/json"
	"time"
)

// State says what Acquire found for a key.
type State int

// The states of a Claim. The zero value is not a valid state, so an empty
// Claim never looks acquired.
const (
	// Acquired means this worker holds the key's Lease and may call Graph
	// under it (Lease.Call).
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

// Claim is what Acquire and Await found for a key: a snapshot taken when it
// was returned, plain data to be read from one goroutine. What changes
// afterwards belongs to its Lease, which copies of the Claim share and
// which is safe for concurrent use.
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
	// LeaseUntil is when the holder's lease ended when the claim was taken
	// (Acquired and Busy), on the Store's clock (the NATS server's with
	// Config.Clock). Lease.HeldUntil follows the lease afterwards.
	LeaseUntil time.Time
	// Attempts counts the calls marked on the record by every owner so far,
	// when the claim was taken. Lease.Attempts follows it afterwards.
	Attempts int

	// TakenOver is true for an Acquired claim that took the key from a
	// previous owner whose lease had expired or who released it while a
	// Graph call may have happened.
	TakenOver bool
	// PreviousOwner and PreviousJobID name the owner TakenOver took the key
	// from.
	PreviousOwner string
	PreviousJobID string
	// PreviousCalling is true when an earlier owner had marked a call, so
	// Graph may already have executed the action: whatever this owner
	// learns from Graph, the outcome must be marked uncertain.
	PreviousCalling bool

	// Outcome is the result blob given to Complete (Done only).
	Outcome json.RawMessage
	// OutcomeStatus is the status given to Complete (Done only).
	OutcomeStatus string
	// CompletedAt is when Complete wrote the outcome (Done only).
	CompletedAt time.Time

	// Lease is the key's lease for an Acquired claim, nil otherwise.
	Lease *Lease

	// requester is the job that asked, arm whether the claim is to be
	// marked calling, and binding what it binds the key to, so that Await
	// can claim for it the same way.
	requester string
	arm       bool
	binding   Binding
}

// acquiredClaim is the claim on a record just written as ours. armed says
// the write marked it calling for a call not yet made; inherited that the
// previous owner had marked it.
func (s *Store) acquiredClaim(kvKey string, rev uint64, rec record, armed, inherited bool) Claim {
	l := s.newLease(kvKey, rev, rec)
	l.armed, l.inherited = armed, inherited
	return Claim{
		State: Acquired, Key: rec.Key, Owner: rec.Owner, JobID: rec.JobID,
		LeaseUntil: rec.LeaseUntil, Attempts: rec.Attempts,
		requester: rec.JobID, arm: armed, Lease: l,
	}
}

func doneClaim(rec record, requester string) Claim {
	return Claim{
		State: Done, Key: rec.Key, Owner: rec.Owner, JobID: rec.JobID, Attempts: rec.Attempts,
		Outcome: rec.Outcome, OutcomeStatus: rec.Status, CompletedAt: rec.CompletedAt,
		requester: requester,
	}
}

func busyClaim(rec record, requester string) Claim {
	return Claim{
		State: Busy, Key: rec.Key, Owner: rec.Owner, JobID: rec.JobID,
		LeaseUntil: rec.LeaseUntil, Attempts: rec.Attempts, requester: requester,
	}
}
