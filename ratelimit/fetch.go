package ratelimit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// errConflict means another writer updated a key between our read and our
// conditional write.
var errConflict = errors.New("ratelimit: key changed by another writer")

// watchLag is how long a fetch that lost a write race waits for the watch
// to bring the winner's log before it reads the key itself.
const watchLag = 20 * time.Millisecond

// reservation is the outcome of one attempt to grant permits: n permits
// usable until until and stamped stamp in the log, or none before retryAt.
// rev is the revision the attempt started from.
type reservation struct {
	n       int
	until   time.Time
	stamp   int64
	retryAt time.Time
	rev     uint64
}

// fetch serves the queue of t until it is empty and no stamps wait to be
// moved (see Wrote): one goroutine per tenant at a time, so that
// goroutines waiting together share KV round trips.
func (l *Limiter) fetch(t *tenant) {
	defer l.wg.Done()
	conflicts := 0
	for {
		l.mu.Lock()
		want, fixing := len(t.queue), len(t.fixes) > 0
		if (want == 0 && !fixing) || l.closed {
			t.fetching = false
			l.mu.Unlock()
			return
		}
		pausedUntil, pauseWake := l.pauses[t.token].until, l.pauseWake
		l.mu.Unlock()

		if d := pausedUntil.Sub(l.now()); d > 0 {
			if !fixing {
				l.idle(d, t.wake, pauseWake)
				continue
			}
			want = 0 // move the stamps, grant nothing
		}
		r, err := l.reserve(t, want)
		switch {
		case errors.Is(err, errConflict):
			conflicts++
			l.stats.conflicts.Add(1)
			l.idle(l.spread(conflicts), nil, nil)
			l.awaitNewer(t, r.rev)
		case err != nil:
			if l.ctx.Err() == nil {
				l.log.Warn().Err(err).Str("tenant_id", t.id).Msg("rate limit window unavailable")
			}
			l.mu.Lock()
			t.fail(err)
			t.known = false
			l.mu.Unlock()
			if fixing {
				// Stamps to move outlive the waiters: try again shortly.
				l.idle(l.cfg.Validity, nil, nil)
			}
		case r.n == 0:
			conflicts = 0
			// Every Limiter waiting for this slot computed the same time;
			// waking at random within a short spread lets the first take it
			// and the others see that through the watch instead of
			// colliding.
			if !r.retryAt.IsZero() {
				if want > 0 {
					l.stats.held.Add(1)
				}
				l.idle(r.retryAt.Sub(l.now())+l.spread(1), t.wake, pauseWake)
			}
		default:
			conflicts = 0
			l.mu.Lock()
			t.deliver(r.n, slot{until: r.until, stamp: r.stamp})
			l.mu.Unlock()
		}
	}
}

// validity is how long the permits of a grant made now stay usable:
// Config.Validity, or three recent write round trips when the KV is slower
// than that allows for, up to a tenth of the window. Unused permits are
// discarded at the end of it, so a slow KV costs throughput, not the bound.
func (l *Limiter) validity() time.Duration {
	adaptive := min(3*time.Duration(l.writeRTT.Load()), l.cfg.Rate.Per/10)
	return max(l.cfg.Validity, adaptive)
}

// Sent tells the Limiter that a call Wait let go was written to the
// network gap later. Graph counts arrivals, so a call written late could
// share a window with a call granted a full window after its permit's
// stamp: the Limiter tracks the recent worst gap (rising at once, decaying
// by an eighth of the difference per call) and stamps later permits that
// much later, up to a tenth of the window. A loaded host (CPU, a new TLS
// connection) then costs a little throughput, not the bound. The decay is
// quick because a call that is late all the same has its stamp moved (see
// Wrote); one slow handshake should not cost the next hundred calls. It is
// safe for concurrent use.
func (l *Limiter) Sent(gap time.Duration) {
	for {
		old := l.sendGap.Load()
		next := int64(max(gap, 0))
		if next < old {
			next = old - (old-next)/8
		}
		if l.sendGap.CompareAndSwap(old, next) {
			return
		}
	}
}

// lateness is how much later than its usable life a permit's stamp must
// be: for the calls written late (see Sent), and for the error of this
// Limiter's clock against the server's, up to half a KV round trip (see
// package clock), which a loaded host makes tens of milliseconds: the
// processes of one host may then correct one clock differently.
func (l *Limiter) lateness() time.Duration {
	return min(time.Duration(l.sendGap.Load())+l.skew(), l.cfg.Rate.Per/10)
}

// skew bounds the error of this Limiter's clock: the uncertainty of its
// latest measurement. A grant counts the window that much longer too, so
// that its own error is covered as the stamps cover the others'.
func (l *Limiter) skew() time.Duration {
	m, ok := l.clock.Measured()
	if !ok {
		return 0
	}
	return min(m.Uncertainty, l.cfg.Rate.Per/10)
}

// noteWrite folds one write's latency into writeRTT: a slower write counts
// at once, faster ones lower it by an eighth of the difference.
func (l *Limiter) noteWrite(d time.Duration) {
	for {
		old := l.writeRTT.Load()
		next := int64(d)
		if next < old {
			next = old - (old-next)/8
		}
		if l.writeRTT.CompareAndSwap(old, next) {
			return
		}
	}
}

// spread is a random delay after the nth consecutive collision with other
// writers: up to Validity/10 (at most 5ms), doubling with each collision.
func (l *Limiter) spread(n int) time.Duration {
	ceiling := min(l.cfg.Validity/5, 10*time.Millisecond) << min(n-1, 3)
	if ceiling <= 0 {
		return 0
	}
	return rand.N(ceiling)
}

// awaitNewer waits briefly for the watch to bring a log newer than rev.
// If none comes, it drops the cache so that the next attempt reads the key.
func (l *Limiter) awaitNewer(t *tenant, rev uint64) {
	l.mu.Lock()
	newer, fresh := t.known && t.rev > rev, t.fresh
	l.mu.Unlock()
	if newer {
		return
	}
	l.idle(watchLag, fresh, nil)
	l.mu.Lock()
	if !t.known || t.rev <= rev {
		t.known = false
	}
	l.mu.Unlock()
}

// reserve makes one attempt to grant up to want permits for t: it reads
// the window log if the cache does not hold it, drops grants that can no
// longer share a window with a call starting now, moves the stamps of
// calls written late (see Wrote), and, if there is room under the
// tenant's learned budget and its pacing, appends a grant stamped with
// the latest time its permits may be used. It writes the log, if it
// granted or moved anything, only if the log is still at the revision it
// read.
func (l *Limiter) reserve(t *tenant, want int) (reservation, error) {
	// The window is kept on the server's clock, so the clock must have
	// measured its offset recently (see package clock).
	if err := l.clock.Fresh(l.ctx); err != nil {
		return reservation{}, fmt.Errorf("ratelimit: %w", err)
	}
	l.mu.Lock()
	known, rev, cached, tat, since := t.known, t.rev, t.grants, t.pace, t.since
	l.mu.Unlock()
	if !known {
		var w windowLog
		var err error
		if rev, w, err = l.load(t); err != nil {
			return reservation{}, err
		}
		cached, tat, since = w.Grants, w.Pace, w.Since
	}
	now := l.now()
	l.mu.Lock()
	fixes := l.takeFixes(t, now)
	l.mu.Unlock()
	calls, burst := l.allowance(t.token)
	// The log keeps grants half a window longer than they count, so that
	// a 429 answered after Graph's latency still finds the calls Graph
	// counted (see estimate).
	keep := l.window + l.cfg.Rate.Per/2
	grants := live(cached, now, keep)
	if len(grants) == 0 {
		since = untilMillis(now)
	}
	if len(fixes) > 0 {
		grants = live(applyFixes(grants, fixes), now, keep)
	}
	counted := live(grants, now, l.window+l.skew())
	r := reservation{rev: rev}
	free := calls - permits(counted)
	n := min(want, free, l.cfg.Batch)
	switch {
	case want == 0:
	case free <= 0:
		r.retryAt = freeAt(counted, calls, l.window+l.skew())
		n = 0
	default:
		// Paced: grant what fits as soon as one permit does, so that calls
		// come one by one rather than in batches, which would meet a lower
		// wall batch by batch.
		p := newPace(calls, burst, l.cfg.Rate.Per).atLeast(l.coldInterval(t.token, now, since))
		if burst >= calls && p.interval <= l.cfg.Rate.Per/time.Duration(calls) {
			break // neither a burst nor a slow start to pace
		}
		var next time.Time
		n, next, r.retryAt = p.allow(time.UnixMilli(tat), now, n, 1)
		if n > 0 {
			tat = untilMillis(next)
		}
	}
	if n <= 0 && len(fixes) == 0 {
		return r, nil
	}
	until := now.Add(l.validity())
	stamp := untilMillis(until.Add(l.lateness()))
	if n > 0 {
		grants = append(grants, grant{Until: stamp, N: n})
	}
	w := windowLog{Rate: l.cfg.Rate.String(), Owner: l.cfg.Owner, At: now.UTC(), Grants: grants, Pace: tat, Since: since}
	value, err := json.Marshal(w)
	if err != nil {
		return reservation{}, fmt.Errorf("ratelimit: encode window log: %w", err)
	}
	sent := time.Now()
	next, err := l.write(l.ctx, t.key, value, rev)
	l.noteWrite(time.Since(sent))
	if err != nil {
		l.mu.Lock()
		t.restoreFixes(fixes)
		l.mu.Unlock()
		return r, err
	}
	l.mu.Lock()
	t.remember(next, w)
	l.mu.Unlock()
	if len(fixes) > 0 {
		l.log.Debug().Str("tenant_id", t.id).Int("moved", len(fixes)).Msg("stamps of calls written late moved")
	}
	if n <= 0 {
		return r, nil
	}
	l.stats.granted.Add(uint64(n))
	if late := l.now().Sub(until); late > 0 {
		l.log.Warn().Str("tenant_id", t.id).Dur("late", late).Dur("validity", until.Sub(now)).
			Msg("rate limit grant arrived after its permits expired; raise Validity")
	}
	l.log.Debug().Str("tenant_id", t.id).Int("permits", n).Int("used", calls-free+n).Int("learned", calls).Msg("permits granted")
	if calls < l.cfg.Rate.N {
		l.grow(t, calls-free+n >= calls)
	}
	return reservation{n: n, until: until, stamp: stamp, rev: rev}, nil
}

// load reads t's window log into its cache and returns the cache (which
// may be newer) and its revision. A missing key is an empty log at
// revision 0.
func (l *Limiter) load(t *tenant) (uint64, windowLog, error) {
	l.stats.kvOps.Add(1)
	var rev uint64
	var w windowLog
	entry, err := l.kv.Get(l.ctx, t.key)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
	case err != nil:
		return 0, windowLog{}, fmt.Errorf("ratelimit: read %s: %w", t.key, err)
	default:
		if w, err = l.decodeWindow(t, entry.Value()); err != nil {
			return 0, windowLog{}, err
		}
		rev = entry.Revision()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	t.remember(rev, w)
	return t.rev, windowLog{Grants: t.grants, Pace: t.pace, Since: t.since}, nil
}

// decodeWindow reads a window log of t and warns, once per tenant, when
// its writer used another rate.
func (l *Limiter) decodeWindow(t *tenant, value []byte) (windowLog, error) {
	w, err := decodeWindow(value)
	if err != nil {
		return windowLog{}, fmt.Errorf("ratelimit: read %s (delete the key to reset it): %w", t.key, err)
	}
	if w.Rate != l.cfg.Rate.String() && t.warnedRate.CompareAndSwap(false, true) {
		l.log.Warn().Str("tenant_id", t.id).Str("rate", l.cfg.Rate.String()).Str("other_rate", w.Rate).
			Str("other_owner", w.Owner).Msg("limiters sharing a window disagree on the rate")
	}
	return w, nil
}

// write stores value at key if the key is still at revision rev (absent
// when rev is zero) and returns the new revision, or errConflict.
func (l *Limiter) write(ctx context.Context, key string, value []byte, rev uint64) (uint64, error) {
	l.stats.kvOps.Add(1)
	var err error
	var next uint64
	if rev == 0 {
		next, err = l.kv.Create(ctx, key, value)
	} else {
		next, err = l.kv.Update(ctx, key, value, rev)
	}
	switch {
	case errors.Is(err, jetstream.ErrKeyExists), errors.Is(err, jetstream.ErrKeyRevisionMismatch):
		return 0, errConflict
	case err != nil:
		return 0, fmt.Errorf("ratelimit: write %s: %w", key, err)
	}
	return next, nil
}
