package idempotency

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Await waits until the Busy claim c, from Acquire, is settled, and returns
// an Acquired or Done claim. Any other claim is returned as it is.
//
// Await does not poll. It watches the one key and acts on each change: a
// completed record is returned as Done without another read; a deleted or
// released record, or a lease that passes (on the Store's clock, see the
// package documentation), makes it claim the key for c's job as Acquire
// does. If that claim finds the key Busy again, because another waiter won
// it, Await keeps waiting on the new holder. Renewals by the holder only
// move the lease timer. A record that turns out bound to another source or
// target than c's claim asked for (AcquireFor) ends the wait with a
// *BoundError.
//
// Await costs one Watch, plus one claim each time the key is freed. It
// returns promptly, with an error wrapping ctx.Err(), when ctx ends. It is
// safe for concurrent use.
func (s *Store) Await(ctx context.Context, c Claim) (Claim, error) {
	if c.State != Busy {
		return c, nil
	}
	key := c.Key
	if err := ValidateKey(key); err != nil {
		return Claim{}, err
	}
	kvKey := KVKey(key)
	s.watches.Add(1)
	w, err := s.kv.Watch(ctx, kvKey)
	if err != nil {
		return Claim{}, fmt.Errorf("idempotency: await: watch: %w", err)
	}
	defer func() { _ = w.Stop() }()

	leaseEnd := time.NewTimer(s.until(c.LeaseUntil))
	defer leaseEnd.Stop()
	seen := false
	for {
		free := false
		select {
		case <-ctx.Done():
			return Claim{}, fmt.Errorf("idempotency: await: %w", ctx.Err())
		case <-leaseEnd.C:
			free = true
		case e, ok := <-w.Updates():
			if !ok {
				return Claim{}, errors.New("idempotency: await: watch closed")
			}
			if e == nil {
				// The initial values are in; none means the key is free.
				free = !seen
				break
			}
			seen = true
			rec, err := entryRecord(e)
			switch {
			case err != nil:
				return Claim{}, fmt.Errorf("idempotency: await: %w", err)
			case rec == nil:
				free = true
			case c.binding.refuses(rec):
				return Claim{}, fmt.Errorf("idempotency: await: %w", boundError(rec, c.binding))
			case rec.Phase == phaseDone:
				return doneClaim(*rec, c.requester), nil
			case !rec.live(s.now()):
				free = true
			default:
				leaseEnd.Reset(s.until(rec.LeaseUntil))
			}
		}
		if !free {
			continue
		}
		next, err := s.claim(ctx, key, c.requester, c.binding, c.arm)
		if err != nil {
			return Claim{}, fmt.Errorf("idempotency: await: %w", err)
		}
		if next.State != Busy {
			return next, nil
		}
		leaseEnd.Reset(s.until(next.LeaseUntil))
	}
}

// entryRecord decodes a watched entry; nil means the key was deleted or
// purged.
func entryRecord(e jetstream.KeyValueEntry) (*record, error) {
	if e.Operation() != jetstream.KeyValuePut {
		return nil, nil
	}
	rec, err := decodeRecord(e.Value())
	if err != nil {
		return nil, err
	}
	return &rec, nil
}
