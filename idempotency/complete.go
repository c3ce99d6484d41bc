package idempotency

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/cenkalti/backoff/v4"
)

// The schedule of Complete's retries: no jitter, since one worker retries
// one record.
const (
	outcomeRetryInitial = 250 * time.Millisecond
	outcomeRetryMax     = 2 * time.Second
)

// Complete stores the job's outcome and turns the record into done, so that
// every later Acquire of the key returns Done with this outcome until the
// record's TTL passes. status is a short word such as "succeeded" or
// "failed"; outcome is a JSON document of at most MaxOutcomeLen bytes, or
// nil.
//
// A call may have acted, so giving up here would let another worker act on
// the key again: a failed write is retried with backoff (250ms doubling to
// 2s) for up to Config.OutcomeRetry after the first failure, and the
// cancellation of ctx (a drain that timed out) does not stop it. The
// retries go on past the lease: the write is a compare-and-set, so it lands
// only if no one took the key over meanwhile (during a NATS outage no one
// can). It returns ErrLost, at once, when the key is no longer ours: the
// caller still answers its own job with its outcome but must not store it.
func (l *Lease) Complete(ctx context.Context, status string, outcome []byte) error {
	switch {
	case status == "":
		return errors.New("idempotency: complete: empty status")
	case len(outcome) > MaxOutcomeLen:
		return fmt.Errorf("idempotency: complete: outcome of %d bytes exceeds %d", len(outcome), MaxOutcomeLen)
	case outcome != nil && !json.Valid(outcome):
		return errors.New("idempotency: complete: outcome is not valid JSON")
	}
	stored := json.RawMessage(append([]byte(nil), outcome...))
	done := func(r *record) {
		r.Phase = phaseDone
		r.Status = status
		r.Outcome = stored
		r.CompletedAt = l.s.now().UTC()
		r.Released = false
	}
	ctx = context.WithoutCancel(ctx)
	write := func() error {
		_, err := l.write(ctx, done, true)
		switch {
		case err == nil, errors.Is(err, errFinished):
			return nil
		case errors.Is(err, ErrLost), errors.Is(err, ErrNotHeld):
			return backoff.Permanent(err)
		}
		return err
	}
	// The first write is made before any retry machinery exists: it
	// nearly always lands, and a job should not pay for what it rarely
	// needs. RetryNotify then starts with the failure at hand.
	err := write()
	var permanent *backoff.PermanentError
	if err != nil && !errors.As(err, &permanent) {
		first := err
		retry := func() error {
			if failed := first; failed != nil {
				first = nil
				return failed
			}
			return write()
		}
		err = backoff.RetryNotify(retry, backoff.WithContext(l.s.outcomeBackOff(), ctx), func(err error, next time.Duration) {
			l.s.log.Info().Err(err).Str("key", l.key).Str("job_id", l.jobID).Dur("retry_in", next).
				Msg("idempotency: could not store the outcome yet; retrying")
		})
	}
	if errors.As(err, &permanent) {
		err = permanent.Err
	}
	if err != nil {
		return fmt.Errorf("idempotency: complete: %w", err)
	}
	return nil
}

// outcomeBackOff is the schedule of Complete's retries.
func (s *Store) outcomeBackOff() backoff.BackOff {
	if s.outcomeRetry < 0 {
		return &backoff.StopBackOff{}
	}
	b := backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(outcomeRetryInitial),
		backoff.WithMaxInterval(outcomeRetryMax),
		backoff.WithMultiplier(2),
		backoff.WithRandomizationFactor(0),
		backoff.WithMaxElapsedTime(0), // bounded by the window instead
	)
	return &windowBackOff{b: b, window: s.outcomeRetry}
}

// windowBackOff stops b once its next delay would end more than window
// after the first failure. (ExponentialBackOff's MaxElapsedTime counts from
// before the first attempt, which a write timing out would use up.)
type windowBackOff struct {
	b      backoff.BackOff
	window time.Duration
	end    time.Time
}

// Reset starts the schedule again.
func (w *windowBackOff) Reset() {
	w.b.Reset()
	w.end = time.Time{}
}

// NextBackOff returns the next delay, or backoff.Stop.
func (w *windowBackOff) NextBackOff() time.Duration {
	if w.end.IsZero() {
		w.end = time.Now().Add(w.window)
	}
	d := w.b.NextBackOff()
	if d == backoff.Stop || time.Until(w.end) < d {
		return backoff.Stop
	}
	return d
}
