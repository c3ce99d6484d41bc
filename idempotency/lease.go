package idempotency

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/semaphore"

	"github.com/recoverpasscode/recoverpasscode/internal/timing"
)

// releaseTimeout bounds Release, which goes on after its context ends.
const releaseTimeout = 2 * time.Second

// Lease is this worker's hold on a key, from Acquire or Await until
// Complete or Release, and the only way to act on the key: Call makes a
// call under it, Complete stores the outcome, Release gives the key back.
// Every write is a compare-and-set on the record, so a lease that another
// owner took over finds out on its next write (ErrLost) and never writes
// again.
//
// A Lease is safe for concurrent use: its methods serialize on a lock that
// a waiter abandons when its context ends. The methods of a nil Lease (the
// Lease of a Claim that is not Acquired) return ErrNotHeld.
type Lease struct {
	s *Store
	// sem is the lease's lock, one slot that a waiter can abandon on ctx
	// cancel.
	sem *semaphore.Weighted
	// key, kvKey, token and jobID never change.
	key, kvKey, token, jobID string
	// rev and rec are the revision and value this lease last wrote or
	// adopted; guarded by sem.
	rev uint64
	rec record
	// closed is set once the lease completed or released the key; guarded
	// by sem.
	closed bool
	// armed says the record is marked calling, and its attempt counted, for
	// a call not yet made (Acquire's mark before the first Call);
	// inherited that an earlier owner had marked it; unknown that a Call of
	// this lease may have acted, so its mark must stay. Guarded by sem.
	armed, inherited, unknown bool
	lost                      atomic.Bool
	// leaseUntil mirrors rec.LeaseUntil (UnixNano) and attempts
	// rec.Attempts, for readers that must not wait for sem.
	leaseUntil, attempts atomic.Int64
	// every is the keep-alive interval (nanoseconds), zero until KeepAlive.
	every atomic.Int64
}

func (s *Store) newLease(kvKey string, rev uint64, rec record) *Lease {
	l := &Lease{s: s, sem: semaphore.NewWeighted(1), key: rec.Key, kvKey: kvKey, token: rec.Token, jobID: rec.JobID}
	l.adopted(rev, rec)
	return l
}

// adopted makes rec at rev the lease's base; the caller holds the lock, or
// is the constructor.
func (l *Lease) adopted(rev uint64, rec record) {
	l.rev, l.rec = rev, rec
	l.leaseUntil.Store(rec.LeaseUntil.UnixNano())
	l.attempts.Store(int64(rec.Attempts))
}

func (l *Lease) lock(ctx context.Context) error {
	if l == nil {
		return ErrNotHeld
	}
	return l.sem.Acquire(ctx, 1)
}

func (l *Lease) unlock() { l.sem.Release(1) }

// usable reports whether the lease may still write; the caller holds its
// lock.
func (l *Lease) usable() error {
	if l.closed {
		return ErrNotHeld
	}
	if l.lost.Load() {
		return ErrLost
	}
	return nil
}

// Lost reports whether the lease has been lost to another owner, as found
// by any of its writes (including KeepAlive's renewals).
func (l *Lease) Lost() bool {
	return l != nil && l.lost.Load()
}

// HeldUntil is when the lease ends as last confirmed by a write of ours
// (including KeepAlive's renewals), on the Store's clock (Config.Clock);
// zero for a nil Lease. Until then no other owner can take the key over
// (see the package documentation on clocks).
func (l *Lease) HeldUntil() time.Time {
	if l == nil {
		return time.Time{}
	}
	return time.Unix(0, l.leaseUntil.Load())
}

// Attempts counts the calls marked on the record by every owner so far, as
// last written or read by this lease.
func (l *Lease) Attempts() int {
	if l == nil {
		return 0
	}
	return int(l.attempts.Load())
}

// Renew extends the lease to Config.Lease from now. It returns ErrLost when
// another owner took the key, and ErrNotHeld for a lease already finished.
func (l *Lease) Renew(ctx context.Context) error {
	if _, err := l.write(ctx, l.renewal, false); err != nil {
		return fmt.Errorf("idempotency: renew: %w", err)
	}
	return nil
}

// KeepAlive renews the lease every interval (Config.Lease/3 when every is
// zero) in the background, on a timer (no goroutine waits between
// renewals), to hold the key through long waits such as a rate-limit pause
// or a backoff; Call then renews before a call only if the lease would end
// within one interval. It stops when ctx ends, when the lease is completed
// or released, or when a renewal finds the key lost; then Lost reports
// true. Other renewal errors are logged and retried at the next tick. The
// returned stop ends the renewals and waits for one in progress; it may be
// called more than once.
func (l *Lease) KeepAlive(ctx context.Context, every time.Duration) (stop func()) {
	if l == nil {
		return func() {}
	}
	if every <= 0 {
		every = l.s.lease / 3
	}
	l.every.Store(int64(every))
	return timing.Every(ctx, every, l.keepAlive)
}

// keepAlive renews the lease once and reports whether to go on.
func (l *Lease) keepAlive(ctx context.Context) bool {
	// A renewal slower than the lease is useless; give up on it then.
	rctx, cancel := context.WithTimeout(ctx, l.s.lease)
	_, err := l.write(rctx, l.renewal, false)
	cancel()
	switch {
	case err == nil:
		return true
	case errors.Is(err, ErrLost), errors.Is(err, ErrNotHeld), ctx.Err() != nil:
		return false
	default:
		l.s.log.Warn().Err(err).Str("key", l.key).Msg("idempotency: renewing a lease failed; retrying")
		return true
	}
}

// renewal extends a record's lease from now.
func (l *Lease) renewal(r *record) {
	r.LeaseUntil = l.s.now().Add(l.s.lease).UTC()
}

// Release gives an unfinished key back, for a job handed back to the queue
// or left alone because credentials are broken. If no call was marked
// (Acquire's mark counts only once a Call took it up and may have acted),
// the record is deleted at its revision and the next Acquire starts
// afresh. If one was, the record stays and its lease ends at once, so the
// next owner takes it over immediately and still sees PreviousCalling.
// Waiters in Await wake up either way.
//
// A key released frees at once, one not released only when its lease
// ends, so Release goes on when ctx is cancelled (a job handed back at
// shutdown), for at most two seconds. It returns ErrLost when the key is no
// longer ours.
func (l *Lease) Release(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
	defer cancel()
	if err := l.lock(ctx); err != nil {
		return fmt.Errorf("idempotency: release: %w", err)
	}
	defer l.unlock()
	if err := l.usable(); err != nil {
		return fmt.Errorf("idempotency: release: %w", err)
	}
	if err := l.release(ctx); err != nil {
		return fmt.Errorf("idempotency: release: %w", err)
	}
	l.closed = true
	return nil
}

func (l *Lease) release(ctx context.Context) error {
	// A mark Acquire made for a call that never came is undone: alone, it
	// does not make the record calling, and it counts no attempt.
	unmade := l.armed
	for range maxRounds {
		if l.rec.Calling && !(unmade && !l.inherited) {
			_, err := l.modify(ctx, func(r *record) {
				r.Released = true
				r.LeaseUntil = l.s.now().UTC()
				if unmade {
					r.Attempts--
				}
			})
			if errors.Is(err, errFinished) {
				return ErrNotHeld
			}
			return err
		}
		l.s.deletes.Add(1)
		err := l.s.kv.Delete(ctx, l.kvKey, jetstream.LastRevision(l.rev))
		if !isRevisionConflict(err) {
			return err
		}
		l.s.conflicts.Add(1)
		err = l.adopt(ctx)
		switch {
		case errors.Is(err, errGone):
			// Our delete landed and only its reply was lost.
			return nil
		case errors.Is(err, errFinished):
			return ErrNotHeld
		case err != nil:
			return err
		}
	}
	return fmt.Errorf("gave up after %d conflicting writes", maxRounds)
}
