package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// watchBucket starts one watch of this app's pause, window and budget keys
// and applies the pauses and budgets already in the bucket before it
// returns. Pauses and learned budgets reach every Limiter this way,
// without polling (a fleet starting cold begins from the budgets last
// learned); window logs keep each Limiter's cache fresh, so that losing a
// write race costs no extra read.
func (l *Limiter) watchBucket(ctx context.Context) error {
	w, err := l.kv.WatchFiltered(l.ctx, []string{pausePrefix + l.app + ".*", windowPrefix + l.app + ".*", budgetPrefix + l.app + ".*"})
	if err != nil {
		return fmt.Errorf("ratelimit: watch bucket: %w", err)
	}
	for initial := true; initial; {
		select {
		case entry, ok := <-w.Updates():
			if !ok {
				return errors.New("ratelimit: watch bucket: the watch ended before the current pauses were read")
			}
			if entry == nil {
				initial = false
				break
			}
			l.apply(entry)
		case <-ctx.Done():
			_ = w.Stop()
			return fmt.Errorf("ratelimit: watch bucket: %w", ctx.Err())
		}
	}
	l.watcher = w
	l.wg.Add(1)
	go l.follow(w)
	return nil
}

// follow applies watched updates until the watch stops.
func (l *Limiter) follow(w jetstream.KeyWatcher) {
	defer l.wg.Done()
	for entry := range w.Updates() {
		if entry != nil {
			l.apply(entry)
		}
	}
	l.mu.Lock()
	closed := l.closed
	l.mu.Unlock()
	if !closed {
		l.log.Error().Msg("bucket watch ended: this process no longer learns of pauses set by others")
	}
}

// apply records one watched key.
func (l *Limiter) apply(entry jetstream.KeyValueEntry) {
	deleted := entry.Operation() == jetstream.KeyValueDelete || entry.Operation() == jetstream.KeyValuePurge
	if token, ok := strings.CutPrefix(entry.Key(), pausePrefix+l.app+"."); ok {
		l.applyPause(token, entry, deleted)
		return
	}
	if token, ok := strings.CutPrefix(entry.Key(), windowPrefix+l.app+"."); ok {
		l.applyWindow(token, entry, deleted)
		return
	}
	if token, ok := strings.CutPrefix(entry.Key(), budgetPrefix+l.app+"."); ok {
		l.applyBudget(token, entry, deleted)
	}
}

// applyBudget records a watched learned budget. A deleted key restores
// the full configured rate.
func (l *Limiter) applyBudget(token string, entry jetstream.KeyValueEntry, deleted bool) {
	if deleted {
		l.forgetBudget(token, entry.Revision())
		return
	}
	b, err := decodeBudget(entry.Value())
	if err != nil {
		l.log.Warn().Err(err).Str("key", entry.Key()).Msg("ignoring unreadable learned budget")
		return
	}
	l.noteBudget(token, b, entry.Revision())
}

// applyPause records a watched pause. A deleted key lifts the pause.
func (l *Limiter) applyPause(token string, entry jetstream.KeyValueEntry, deleted bool) {
	if deleted {
		l.notePause(token, time.Time{}, entry.Revision())
		return
	}
	v, err := decodePause(entry.Value())
	if err != nil {
		l.log.Warn().Err(err).Str("key", entry.Key()).Msg("ignoring unreadable pause")
		return
	}
	l.notePause(token, v.Until, entry.Revision())
	l.log.Debug().Str("key", entry.Key()).Time("until", v.Until).Str("owner", v.Owner).Msg("pause seen")
}

// applyWindow refreshes the cached window log of a tenant this Limiter
// serves; logs of other tenants are not even decoded.
func (l *Limiter) applyWindow(token string, entry jetstream.KeyValueEntry, deleted bool) {
	l.mu.Lock()
	t := l.tenants[token]
	l.mu.Unlock()
	if t == nil {
		return
	}
	var w windowLog
	if !deleted {
		var err error
		if w, err = l.decodeWindow(t, entry.Value()); err != nil {
			l.log.Warn().Err(err).Str("key", entry.Key()).Msg("ignoring unreadable window log")
			return
		}
	}
	l.mu.Lock()
	t.remember(entry.Revision(), w)
	l.mu.Unlock()
}
