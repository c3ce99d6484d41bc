package idempotency

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/recoverpasscode/recoverpasscode/internal/timing"
)

// errFinished says the record is already done under this claim's token: an
// earlier Complete landed although its reply was lost.
var errFinished = errors.New("idempotency: already completed by this claim")

// Renew extends the lease of an acquired claim to Config.Lease from now and
// updates c.LeaseUntil. It returns ErrLost when another owner took the key,
// and ErrNotHeld for a claim that is not acquired or already finished.
func (s *Store) Renew(ctx context.Context, c *Claim) error {
	rec, err := s.write(ctx, c.h, s.renewal, false)
	if err != nil {
		return fmt.Errorf("idempotency: renew: %w", err)
	}
	c.LeaseUntil = rec.LeaseUntil
	return nil
}

// MarkCalling records, just before a Graph call, that the call may take
// effect: it sets the sticky calling flag, counts the attempt and extends
// the lease, then updates c.Attempts and c.LeaseUntil. Call Graph only after
// it returned nil; on ErrLost another owner has the key and this worker must
// not call. The Graph attempt's deadline should end well before the lease.
//
// After ClaimCalling, the first MarkCalling only takes up the mark the claim
// wrote, with no round trip.
func (s *Store) MarkCalling(ctx context.Context, c *Claim) error {
	rec, armed, err := s.takeArm(ctx, c.h)
	if err != nil {
		return fmt.Errorf("idempotency: mark calling: %w", err)
	}
	if armed {
		c.LeaseUntil = rec.LeaseUntil
		c.Attempts = rec.Attempts
		return nil
	}
	rec, err = s.write(ctx, c.h, func(r *record) {
		s.renewal(r)
		r.Calling = true
		r.Attempts++
	}, false)
	if err != nil {
		return fmt.Errorf("idempotency: mark calling: %w", err)
	}
	c.LeaseUntil = rec.LeaseUntil
	c.Attempts = rec.Attempts
	return nil
}

// MarkAnswered records that the call marked by MarkCalling was answered
// without taking effect (Graph refused it before acting: a 429, a 503, a
// connection refused), so that an owner taking the key over later need not
// treat it as possibly performed. The caller must not use it after any
// attempt of this claim ended with an unknown outcome. A flag inherited from
// an earlier owner (c.PreviousCalling) stays set: that call's fate is
// unknown.
func (s *Store) MarkAnswered(ctx context.Context, c *Claim) error {
	if _, _, err := s.takeArm(ctx, c.h); err != nil {
		return fmt.Errorf("idempotency: mark answered: %w", err)
	}
	if c.PreviousCalling {
		return nil
	}
	if _, err := s.write(ctx, c.h, func(r *record) { r.Calling = false }, false); err != nil {
		return fmt.Errorf("idempotency: mark answered: %w", err)
	}
	return nil
}

// Complete stores the job's outcome and turns the record into done, so that
// every later Claim of the key returns Done with this outcome until the
// record's TTL passes. status is a short word such as "succeeded" or
// "failed"; outcome is a JSON document of at most MaxOutcomeLen bytes, or
// nil. It returns ErrLost when the key is no longer ours: the caller still
// answers its own job with its outcome but must not store it.
func (s *Store) Complete(ctx context.Context, c *Claim, status string, outcome []byte) error {
	switch {
	case status == "":
		return errors.New("idempotency: complete: empty status")
	case len(outcome) > MaxOutcomeLen:
		return fmt.Errorf("idempotency: complete: outcome of %d bytes exceeds %d", len(outcome), MaxOutcomeLen)
	case outcome != nil && !json.Valid(outcome):
		return errors.New("idempotency: complete: outcome is not valid JSON")
	}
	stored := json.RawMessage(append([]byte(nil), outcome...))
	_, err := s.write(ctx, c.h, func(r *record) {
		r.Phase = phaseDone
		r.Status = status
		r.Outcome = stored
		r.CompletedAt = time.Now().UTC()
		r.Released = false
	}, true)
	if err != nil && !errors.Is(err, errFinished) {
		return fmt.Errorf("idempotency: complete: %w", err)
	}
	return nil
}

// Release gives an unfinished key back, for a job handed back to the queue
// (NakWithDelay) or left alone because credentials are broken. If no Graph
// call was marked (the mark of ClaimCalling counts only once MarkCalling
// took it up), the record is deleted at its revision and the next Claim
// starts afresh. If one was, the record stays and its lease ends at once, so
// the next owner takes it over immediately and still sees PreviousCalling.
// Waiters in Await wake up either way. It returns ErrLost when the key is no
// longer ours.
func (s *Store) Release(ctx context.Context, c *Claim) error {
	h := c.h
	if h == nil {
		return fmt.Errorf("idempotency: release: %w", ErrNotHeld)
	}
	if err := h.lock(ctx); err != nil {
		return fmt.Errorf("idempotency: release: %w", err)
	}
	defer h.unlock()
	if err := h.usable(); err != nil {
		return fmt.Errorf("idempotency: release: %w", err)
	}
	if err := s.release(ctx, h); err != nil {
		return fmt.Errorf("idempotency: release: %w", err)
	}
	h.closed = true
	return nil
}

func (s *Store) release(ctx context.Context, h *hold) error {
	// A mark ClaimCalling made for a call that never came is undone: alone,
	// it does not make the record calling, and it counts no attempt.
	unmade := h.armed
	for range maxRounds {
		if h.rec.Calling && !(unmade && !h.inherited) {
			_, err := s.modify(ctx, h, func(r *record) {
				r.Released = true
				r.LeaseUntil = time.Now().UTC()
				if unmade {
					r.Attempts--
				}
			})
			if errors.Is(err, errFinished) {
				return ErrNotHeld
			}
			return err
		}
		s.deletes.Add(1)
		err := s.kv.Delete(ctx, h.kvKey, jetstream.LastRevision(h.rev))
		if !isRevisionConflict(err) {
			return err
		}
		s.conflicts.Add(1)
		err = s.adopt(ctx, h)
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

// takeArm consumes the mark ClaimCalling wrote, if it is still unused, and
// returns the record as last written and whether there was one.
func (s *Store) takeArm(ctx context.Context, h *hold) (record, bool, error) {
	if h == nil {
		return record{}, false, ErrNotHeld
	}
	if err := h.lock(ctx); err != nil {
		return record{}, false, err
	}
	defer h.unlock()
	if err := h.usable(); err != nil {
		return record{}, false, err
	}
	armed := h.armed
	h.armed = false
	return h.rec, armed, nil
}

// KeepAlive renews the claim every interval (Config.Lease/3 when every is
// zero) in the background, on a timer (no goroutine waits between
// renewals), to hold the key through long waits such as a rate-limit pause
// or a backoff. It stops when ctx ends, when the claim is completed or
// released, or when a renewal finds the key lost; then c.Lost reports true.
// Other renewal errors are logged and retried at the next tick. The
// returned stop ends the renewals and waits for one in progress; it may be
// called more than once. KeepAlive never writes c's exported fields, so the
// caller may keep using c meanwhile.
func (s *Store) KeepAlive(ctx context.Context, c *Claim, every time.Duration) (stop func()) {
	if c.h == nil {
		return func() {}
	}
	if every <= 0 {
		every = s.lease / 3
	}
	return timing.Every(ctx, every, func(ctx context.Context) bool {
		return s.keepAlive(ctx, c.h)
	})
}

// keepAlive renews h's lease once and reports whether to go on.
func (s *Store) keepAlive(ctx context.Context, h *hold) bool {
	// A renewal slower than the lease is useless; give up on it then.
	rctx, cancel := context.WithTimeout(ctx, s.lease)
	_, err := s.write(rctx, h, s.renewal, false)
	cancel()
	switch {
	case err == nil:
		return true
	case errors.Is(err, ErrLost), errors.Is(err, ErrNotHeld), ctx.Err() != nil:
		return false
	default:
		s.log.Warn().Err(err).Str("key", h.key).Msg("idempotency: renewing a lease failed; retrying")
		return true
	}
}

// renewal extends a record's lease from now.
func (s *Store) renewal(r *record) {
	r.LeaseUntil = time.Now().Add(s.lease).UTC()
}

// usable reports whether the hold may still write; the caller holds its lock.
func (h *hold) usable() error {
	if h.closed {
		return ErrNotHeld
	}
	if h.lost.Load() {
		return ErrLost
	}
	return nil
}

// write applies change to the claim's record under the claim's lock, and
// closes the claim afterwards when finish is set.
func (s *Store) write(ctx context.Context, h *hold, change func(*record), finish bool) (record, error) {
	if h == nil {
		return record{}, ErrNotHeld
	}
	if err := h.lock(ctx); err != nil {
		return record{}, err
	}
	defer h.unlock()
	if err := h.usable(); err != nil {
		return record{}, err
	}
	rec, err := s.modify(ctx, h, change)
	if errors.Is(err, errFinished) && !finish {
		err = ErrNotHeld
	}
	if err == nil && finish {
		h.closed = true
	}
	return rec, err
}

// modify writes change(record) at the claim's revision. On a conflict it
// re-reads: if the record still carries our token, an earlier write of ours
// landed although its reply was lost, and we write again over it; otherwise
// the claim is lost. The caller holds h's lock.
func (s *Store) modify(ctx context.Context, h *hold, change func(*record)) (record, error) {
	for range maxRounds {
		next := h.rec
		change(&next)
		data, err := encodeRecord(&next)
		if err != nil {
			return record{}, err
		}
		s.updates.Add(1)
		rev, err := s.kv.Update(ctx, h.kvKey, data, h.rev)
		if err == nil {
			h.rev, h.rec = rev, next
			h.leaseUntil.Store(next.LeaseUntil.UnixNano())
			return next, nil
		}
		if !isRevisionConflict(err) {
			return record{}, err
		}
		s.conflicts.Add(1)
		err = s.adopt(ctx, h)
		if errors.Is(err, errGone) {
			return record{}, s.lose(h, "")
		}
		if err != nil {
			return record{}, err
		}
	}
	return record{}, fmt.Errorf("gave up after %d conflicting writes", maxRounds)
}

// adopt re-reads the record after a conflict and makes it the claim's base
// if it still carries the claim's token. It returns errGone when the key was
// removed, errFinished when it is done under our token, and ErrLost when
// another claim holds it. The caller holds h's lock.
func (s *Store) adopt(ctx context.Context, h *hold) error {
	cur, rev, err := s.get(ctx, h.kvKey)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return errGone
	}
	if err != nil {
		return err
	}
	if cur.Token != h.token {
		return s.lose(h, cur.Owner)
	}
	h.rev, h.rec = rev, cur
	h.leaseUntil.Store(cur.LeaseUntil.UnixNano())
	if cur.Phase == phaseDone {
		h.closed = true
		return errFinished
	}
	return nil
}

// lose marks the claim lost and says so in the log.
func (s *Store) lose(h *hold, newOwner string) error {
	h.lost.Store(true)
	s.log.Warn().Str("key", h.key).Str("job_id", h.rec.JobID).Str("new_owner", newOwner).
		Int("attempt", h.rec.Attempts).Bool("calling", h.rec.Calling).
		Msg("idempotency: lost a key to another owner")
	return ErrLost
}
