package idempotency

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// errFinished says the record is already done under this lease's token: an
// earlier Complete landed although its reply was lost.
var errFinished = errors.New("idempotency: already completed by this lease")

// write applies change to the lease's record under the lease's lock, and
// closes the lease afterwards when finish is set.
func (l *Lease) write(ctx context.Context, change func(*record), finish bool) (record, error) {
	if err := l.lock(ctx); err != nil {
		return record{}, err
	}
	defer l.unlock()
	if err := l.usable(); err != nil {
		return record{}, err
	}
	rec, err := l.modify(ctx, change)
	if errors.Is(err, errFinished) && !finish {
		err = ErrNotHeld
	}
	if err == nil && finish {
		l.closed = true
	}
	return rec, err
}

// modify writes change(record) at the lease's revision. On a conflict it
// re-reads: if the record still carries our token, an earlier write of ours
// landed although its reply was lost, and we write again over it; otherwise
// the lease is lost. The caller holds the lock.
func (l *Lease) modify(ctx context.Context, change func(*record)) (record, error) {
	for range maxRounds {
		next := l.rec
		change(&next)
		data, err := encodeRecord(&next)
		if err != nil {
			return record{}, err
		}
		l.s.updates.Add(1)
		rev, err := l.s.kv.Update(ctx, l.kvKey, data, l.rev)
		if err == nil {
			l.adopted(rev, next)
			return next, nil
		}
		if !isRevisionConflict(err) {
			return record{}, err
		}
		l.s.conflicts.Add(1)
		err = l.adopt(ctx)
		if errors.Is(err, errGone) {
			return record{}, l.lose("")
		}
		if err != nil {
			return record{}, err
		}
	}
	return record{}, fmt.Errorf("gave up after %d conflicting writes", maxRounds)
}

// adopt re-reads the record after a conflict and makes it the lease's base
// if it still carries the lease's token. It returns errGone when the key
// was removed, errFinished when it is done under our token, and ErrLost
// when another claim holds it. The caller holds the lock.
func (l *Lease) adopt(ctx context.Context) error {
	cur, rev, err := l.s.get(ctx, l.kvKey)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return errGone
	}
	if err != nil {
		return err
	}
	if cur.Token != l.token {
		return l.lose(cur.Owner)
	}
	l.adopted(rev, cur)
	if cur.Phase == phaseDone {
		l.closed = true
		return errFinished
	}
	return nil
}

// lose marks the lease lost and says so in the log.
func (l *Lease) lose(newOwner string) error {
	l.lost.Store(true)
	l.s.log.Warn().Str("key", l.key).Str("job_id", l.rec.JobID).Str("new_owner", newOwner).
		Int("attempt", l.rec.Attempts).Bool("calling", l.rec.Calling).
		Msg("idempotency: lost a key to another owner")
	return ErrLost
}
