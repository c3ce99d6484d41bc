package idempotency

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Fate is what became of a call made under a lease, as the caller of Call
// learned it. It decides what the record tells a later owner of the key.
type Fate int

// The fates of a call. The zero value is not one of them; Call counts any
// value it does not know as Unknown.
const (
	// NotCalled: the call was not made (the wait before it failed, or no
	// request was sent).
	NotCalled Fate = iota + 1
	// Refused: the call was answered without taking effect (Graph's 429,
	// 503, 401 or another 4xx). The record's mark is cleared, so a later
	// owner need not fear a double call.
	Refused
	// Unknown: the call may have taken effect without a clear answer (a
	// timeout, a 500, 502 or 504, a cancellation). The mark stays for good:
	// a later owner of the key must report its outcome uncertain.
	Unknown
	// Acted: the call took effect. Store the outcome with Complete.
	Acted
)

// String returns the lowercase name of the fate.
func (f Fate) String() string {
	switch f {
	case NotCalled:
		return "not called"
	case Refused:
		return "refused"
	case Unknown:
		return "unknown"
	case Acted:
		return "acted"
	default:
		return "invalid"
	}
}

// Call makes one call under the lease, which is how the record keeps a key
// to at most one call that takes effect:
//
//  1. It marks the record calling, counting an attempt and extending the
//     lease: a worker that dies from here on leaves a record that tells the
//     next owner a call may have happened. The first Call after Acquire
//     takes up Acquire's mark and writes nothing.
//  2. It runs wait, if not nil: the place for a rate-limit wait, so that
//     nothing but the call lies between a permit and the call. An error
//     from wait is returned as it is, with NotCalled.
//  3. It confirms the lease: if it would end within one keep-alive
//     interval (KeepAlive could not renew it during the wait), it renews
//     it, a compare-and-set that finds a lost key before the call.
//  4. It runs call, which makes the call and says what became of it.
//  5. It records the fate: NotCalled and Refused clear the mark (unless a
//     call of this lease or of an earlier owner may have acted), Unknown
//     keeps it for the rest of the lease, Acted leaves it for Complete.
//
// When marking or confirming fails, call is not run and the error (ErrLost
// when another owner took the key) is returned with NotCalled. A failure to
// clear the mark is only logged: the mark errs on the safe side. Each call's
// own deadline should end well before the lease, which Call extends only
// once, before the call.
func (l *Lease) Call(ctx context.Context, wait func(context.Context) error, call func(context.Context) Fate) (Fate, error) {
	if err := l.mark(ctx); err != nil {
		return NotCalled, fmt.Errorf("idempotency: call: mark calling: %w", err)
	}
	if wait != nil {
		if err := wait(ctx); err != nil {
			l.settle(ctx, NotCalled)
			return NotCalled, err
		}
	}
	if err := l.confirm(ctx); err != nil {
		l.settle(ctx, NotCalled)
		return NotCalled, fmt.Errorf("idempotency: call: the lease lapsed before the call: %w", err)
	}
	fate := call(ctx)
	switch fate {
	case NotCalled, Refused, Unknown, Acted:
	default:
		fate = Unknown
	}
	l.settle(ctx, fate)
	return fate, nil
}

// mark records that a call may take effect: the sticky calling flag, one
// more attempt, a renewed lease; or takes up Acquire's unused mark.
func (l *Lease) mark(ctx context.Context) error {
	if err := l.lock(ctx); err != nil {
		return err
	}
	defer l.unlock()
	if err := l.usable(); err != nil {
		return err
	}
	if l.armed {
		l.armed = false
		return nil
	}
	_, err := l.modify(ctx, func(r *record) {
		l.renewal(r)
		r.Calling = true
		r.Attempts++
	})
	if errors.Is(err, errFinished) {
		err = ErrNotHeld
	}
	return err
}

// confirm renews the lease if it would end within one keep-alive interval.
func (l *Lease) confirm(ctx context.Context) error {
	margin := time.Duration(l.every.Load())
	if margin <= 0 {
		margin = l.s.lease / 3
	}
	if l.s.until(l.HeldUntil()) >= margin {
		return nil
	}
	_, err := l.write(ctx, l.renewal, false)
	return err
}

// settle records the fate of the call marked by mark.
func (l *Lease) settle(ctx context.Context, fate Fate) {
	switch fate {
	case Acted:
		return
	case NotCalled, Refused:
		// The job may be ending (a drain): the record must still learn
		// that no call took effect.
		err := l.answered(context.WithoutCancel(ctx))
		if err != nil && !errors.Is(err, ErrLost) {
			l.s.log.Warn().Err(err).Str("key", l.key).Str("job_id", l.jobID).
				Msg("idempotency: could not record that the marked call did not take effect")
		}
	default:
		if l.lock(context.WithoutCancel(ctx)) == nil {
			l.unknown = true
			l.unlock()
		}
	}
}

// answered clears the calling flag after a call that did not take effect,
// unless this lease's own earlier call, or an earlier owner's (inherited),
// may have: that call's fate stays unknown.
func (l *Lease) answered(ctx context.Context) error {
	if err := l.lock(ctx); err != nil {
		return err
	}
	defer l.unlock()
	if err := l.usable(); err != nil {
		return err
	}
	l.armed = false
	if l.unknown || l.inherited {
		return nil
	}
	_, err := l.modify(ctx, func(r *record) { r.Calling = false })
	if errors.Is(err, errFinished) {
		err = ErrNotHeld
	}
	return err
}
