package ratelimit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/recoverpasscode/recoverpasscode/internal/timing"
)

// pauseValue is the value at a pause key.
type pauseValue struct {
	// Until is when calls for the tenant may start again.
	Until time.Time `json:"until"`
	// Owner is the Config.Owner of the Limiter that set the pause.
	Owner string `json:"owner"`
	// At is when it was set, by the owner's clock.
	At time.Time `json:"at"`
}

// pause is a tenant's pause as a Limiter last saw it. rev orders updates,
// so a late echo of an older value never shortens a newer one.
type pause struct {
	until time.Time
	rev   uint64
}

// Pause stops every Limiter on the bucket from letting calls start for
// (App, tenantID) until the given time; use it when Graph answers 429. A
// later time extends a pause in force; an earlier one never shortens it.
// The pause is written with a conditional update, so concurrent pauses from
// several processes end at the latest of their times, and this Limiter
// honours it at once. The others learn of it from their watch of the
// bucket, typically within a millisecond. An operator may lift a pause early
// by deleting its key, "pause.<app>.<tenant>".
//
// until is read on the local clock (that of Config.Clock, the real one in
// production); the bucket holds it on the server's, like the windows, so
// that a host whose clock is off neither cuts other workers' pauses short
// nor makes them longer. A pause lasts at most BucketTTL, after which the
// bucket forgets it. Pause is safe for concurrent use; it returns ErrClosed
// after Close.
func (l *Limiter) Pause(ctx context.Context, tenantID string, until time.Time) error {
	if tenantID == "" {
		return errors.New("ratelimit: pause: a tenant id is required")
	}
	l.mu.Lock()
	closed := l.closed
	l.mu.Unlock()
	if closed {
		return ErrClosed
	}
	until = l.clock.ToServer(until)
	if !until.After(l.now()) {
		return nil
	}
	token := keyToken(tenantID)
	key := pauseKey(l.app, token)
	// Stop this process's calls before the round trips: at the told rate
	// on a loaded host, they let another call or two into the wall.
	l.holdLocally(token, until)
	for conflicts := 0; ; {
		l.stats.kvOps.Add(1)
		entry, err := l.kv.Get(ctx, key)
		var rev uint64
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
		case err != nil:
			return fmt.Errorf("ratelimit: pause: read %s: %w", key, err)
		default:
			rev = entry.Revision()
			current, err := decodePause(entry.Value())
			if err == nil && !until.After(current.Until) {
				l.notePause(token, current.Until, rev)
				return nil
			}
		}
		value, err := json.Marshal(pauseValue{Until: until.UTC(), Owner: l.cfg.Owner, At: l.now().UTC()})
		if err != nil {
			return fmt.Errorf("ratelimit: pause: encode: %w", err)
		}
		next, err := l.write(ctx, key, value, rev)
		if errors.Is(err, errConflict) {
			conflicts++
			l.stats.conflicts.Add(1)
			if !timing.Sleep(ctx, l.spread(conflicts)) {
				return ctx.Err()
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("ratelimit: pause: %w", err)
		}
		l.notePause(token, until, next)
		l.log.Info().Str("tenant_id", tenantID).Time("until", until).Msg("tenant paused")
		return nil
	}
}

// PausedUntil reports when the pause of (App, tenantID) ends, on the local
// clock, as this Limiter last saw it through its watch, and false when the
// tenant is not paused now. It is safe for concurrent use.
func (l *Limiter) PausedUntil(tenantID string) (time.Time, bool) {
	until, paused := l.pausedUntil(keyToken(tenantID), l.now())
	if !paused {
		return until, false
	}
	return l.clock.ToLocal(until), true
}

// pausedUntil is PausedUntil for a tenant token at now.
func (l *Limiter) pausedUntil(token string, now time.Time) (time.Time, bool) {
	l.mu.Lock()
	until := l.pauses[token].until
	l.mu.Unlock()
	if until.After(now) {
		return until, true
	}
	return time.Time{}, false
}

// notePause records a pause of the tenant with token at revision rev,
// unless a newer revision is already known, and wakes everything waiting
// on pauses to re-check.
func (l *Limiter) notePause(token string, until time.Time, rev uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if rev <= l.pauses[token].rev {
		return
	}
	l.pauses[token] = pause{until: until, rev: rev}
	close(l.pauseWake)
	l.pauseWake = make(chan struct{})
}

// holdLocally pauses the tenant with token in this Limiter until until,
// if that is later than the pause it knows, ahead of writing the pause to
// the bucket. The revision stays, so the bucket's value replaces it as
// soon as the watch brings it.
func (l *Limiter) holdLocally(token string, until time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	p := l.pauses[token]
	if !until.After(p.until) {
		return
	}
	p.until = until
	l.pauses[token] = p
	close(l.pauseWake)
	l.pauseWake = make(chan struct{})
}

// decodePause reads a stored pause.
func decodePause(b []byte) (pauseValue, error) {
	var v pauseValue
	if err := json.Unmarshal(b, &v); err != nil {
		return pauseValue{}, fmt.Errorf("decode pause: %w", err)
	}
	return v, nil
}
