package ratelimit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/recoverpasscode/recoverpasscode/internal/timing"
)

// Throttle describes one call that Graph answered 429. Its times are read
// on the local clock (that of Config.Clock), as Pause's until is.
type Throttle struct {
	// Started is when Wait let the call go.
	Started time.Time
	// RetryAfter is the server's Retry-After, if HasRetryAfter.
	RetryAfter    time.Duration
	HasRetryAfter bool
	// Until is when the tenant's calls may resume: the pause to set.
	Until time.Time
}

// budgetState is a tenant's learned budget as a Limiter last saw it; rev
// orders updates as for pauses. A zero rev means the key is absent.
type budgetState struct {
	b   budget
	rev uint64
}

// Throttled tells the fleet that Graph answered a call for (App, tenantID)
// with 429: it pauses the tenant until th.Until, as Pause does, and cuts
// the tenant's learned budget, once per episode: a 429 to a call that Wait
// let go before the last cut's pause ended is part of that cut's episode
// and changes nothing, so neither a burst of 429s nor several workers
// seeing them cut twice. The cut is written with a conditional update; of
// concurrent cuts the first wins and the others find its episode.
//
// The new rate is Graph's own answer where the fleet's window log tells
// it: the calls the fleet made in the window that Retry-After says Graph
// counted (see the package documentation). Throttled is safe for
// concurrent use; it returns ErrClosed after Close.
func (l *Limiter) Throttled(ctx context.Context, tenantID string, th Throttle) error {
	if err := l.Pause(ctx, tenantID, th.Until); err != nil {
		return err
	}
	if l.cfg.Rate.Unlimited() {
		return nil
	}
	t, err := l.tenant(tenantID)
	if err != nil {
		return err
	}
	key := budgetKey(l.app, t.token)
	// The log and the budget are kept on the server's clock.
	th.Started, th.Until = l.clock.ToServer(th.Started), l.clock.ToServer(th.Until)
	for conflicts := 0; ; {
		current, rev := l.budgetOf(t.token)
		now := l.now()
		var next budget
		estimate := -1
		switch {
		case current.sameEpisode(th.Started) && current.inBand(th.Started, l.validity()+l.lateness()):
			// Another call of the band the cut counted as accepted
			// without knowing: one fewer was.
			var changed bool
			if next, changed = current.refused(); !changed {
				return nil
			}
			estimate = next.Estimate
		case current.sameEpisode(th.Started):
			// Part of the last cut's episode: only an earlier call can
			// tell more about what Graph accepted.
			if !th.Started.Before(current.CutFrom) {
				return nil
			}
			var changed bool
			estimate, _ = l.estimate(t, th)
			if next, changed = current.refine(th.Started, estimate); !changed {
				return nil
			}
		default:
			var unsure int
			estimate, unsure = l.estimate(t, th)
			next = current.cut(l.cfg.Rate, now, estimate, later(th.Until, now.Add(l.cfg.Margin)))
			next.CutFrom = th.Started
			if estimate >= 0 && next.Learned <= float64(estimate) {
				// The cut went to the estimate, or below it by the least
				// cut of a call: that much of the doubt is spent.
				next.Unsure = max(0, unsure-int(math.Ceil(float64(estimate)-next.Learned-1e-9)))
			}
		}
		logIt := next.worthLogging()
		if logIt {
			next.Logged = next.Learned
		}
		written, err := l.writeBudget(ctx, t.token, key, next, rev)
		if errors.Is(err, errConflict) {
			conflicts++
			l.stats.conflicts.Add(1)
			if err := l.reloadBudget(ctx, t.token, key); err != nil {
				return err
			}
			if !timing.Sleep(ctx, l.spread(conflicts)) {
				return ctx.Err()
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("ratelimit: throttled: %w", err)
		}
		ev := l.log.Info()
		if !logIt {
			ev = l.log.Debug()
		}
		ev.Str("tenant_id", tenantID).Float64("learned", round2(written.Learned)).Float64("was", round2(current.Learned)).
			Int("estimate", estimate).Dur("retry_after", th.RetryAfter).Str("rate", l.cfg.Rate.String()).
			Msg("graph throttled the tenant: learned rate cut")
		return nil
	}
}

// LearnedRate returns the calls per window the fleet currently allows
// itself for (App, tenantID), as this Limiter last saw it: the configured
// N for a tenant never throttled (and 0 for an unlimited Rate).
func (l *Limiter) LearnedRate(tenantID string) float64 {
	b, _ := l.budgetOf(keyToken(tenantID))
	return b.Learned
}

// budgetOf is the learned budget of the tenant with token, and its
// revision (0: none stored).
func (l *Limiter) budgetOf(token string) (budget, uint64) {
	l.mu.Lock()
	s, ok := l.budgets[token]
	l.mu.Unlock()
	if !ok {
		return fullBudget(l.cfg.Rate), 0
	}
	return s.b.within(l.cfg.Rate), s.rev
}

// allowance is the permits per window and the burst the learned budget of
// the tenant with token allows now.
func (l *Limiter) allowance(token string) (calls, burst int) {
	b, _ := l.budgetOf(token)
	calls = b.calls(l.cfg.Rate)
	burst = max(1, (l.cfg.Burst*calls+l.cfg.Rate.N/2)/l.cfg.Rate.N)
	return calls, min(burst, calls)
}

// estimate is how many of the fleet's calls Graph accepted in the window
// that ended with the throttled call, from this Limiter's copy of the
// window log, or -1 when the log cannot tell. Graph counts arrivals in
// the window of Per before the 429; a Retry-After shorter than that says
// the oldest of them leaves then, so the counted calls began Per less
// Retry-After before it. Retry-After comes in whole seconds (rounded up),
// so a second less is used: counting a little too much only cuts a little
// too little, which the next 429 corrects.
//
// The throttled call's own grant is stamped between Started (plus the
// lateness) and Validity after that: grants stamped before it came before
// the call; of those in that band one is its own, the others (permits of
// the same grant, or granted within Validity of it, as the burst after a
// pause) may or may not have been accepted. They are counted as accepted,
// and unsure says how many: the 429s of the same band that follow take
// them off one by one (budget.refused), so that the cut ends at what
// Graph accepted either way. Not counting them would cut by the whole
// burst: with a fifth of the window let go at once after a pause, a wall
// of 20 was learned as 15 and held there.
func (l *Limiter) estimate(t *tenant, th Throttle) (estimate, unsure int) {
	from := th.Started.Add(-l.cfg.Rate.Per)
	if th.HasRetryAfter {
		wait := th.RetryAfter - time.Second
		if wait >= l.cfg.Rate.Per {
			return -1, 0 // a penalty longer than the window says nothing about it
		}
		if wait > 0 {
			from = from.Add(wait)
		}
	}
	edge := th.Started.Add(l.lateness())
	to := edge.Add(l.validity() + time.Millisecond) // stamps are whole milliseconds, rounded up
	l.mu.Lock()
	known, grants := t.known, t.grants
	l.mu.Unlock()
	if !known {
		_, w, err := l.load(t)
		if err != nil {
			return -1, 0
		}
		grants = w.Grants
	}
	before, band := 0, 0
	for _, g := range grants {
		switch until := time.UnixMilli(g.Until); {
		case !until.After(from) || until.After(to):
		case until.Before(edge):
			before += g.N
		default:
			band += g.N
		}
	}
	unsure = max(band-1, 0)
	if before+unsure == 0 {
		return -1, 0
	}
	return before + unsure, unsure
}

// grow advances the tenant's learned budget after a grant, if it is below
// the configured rate and half a window has passed since it last grew;
// full says the grant filled the window to the learned rate. At or above
// the wall only a full window advances it, as TCP grows its window only
// while it limits the sender (RFC 7661): a window that used less than the
// rate said nothing about more, and a probe step counted on it would make
// the next step, several calls over the wall at once, the first real
// test. Losing the write to another Limiter is fine: that one grew it.
func (l *Limiter) grow(t *tenant, full bool) {
	current, rev := l.budgetOf(t.token)
	if !full && current.Learned >= current.Wall {
		return
	}
	next, ok := current.grow(l.cfg.Rate, l.now())
	if !ok {
		return
	}
	logIt := next.worthLogging()
	if logIt {
		next.Logged = next.Learned
	}
	_, err := l.writeBudget(l.ctx, t.token, budgetKey(l.app, t.token), next, rev)
	switch {
	case errors.Is(err, errConflict):
		l.stats.conflicts.Add(1)
	case err != nil:
		if l.ctx.Err() == nil {
			l.log.Warn().Err(err).Str("tenant_id", t.id).Msg("could not store the learned rate")
		}
	case logIt:
		l.log.Info().Str("tenant_id", t.id).Float64("learned", round2(next.Learned)).Float64("was", round2(current.Logged)).
			Str("rate", l.cfg.Rate.String()).Msg("learned rate grew: probing for more of the tenant's budget")
	}
}

// writeBudget stores b for the tenant with token at key if the key is
// still at rev, and records it.
func (l *Limiter) writeBudget(ctx context.Context, token, key string, b budget, rev uint64) (budget, error) {
	b.Owner, b.At = l.cfg.Owner, l.now().UTC()
	value, err := json.Marshal(b)
	if err != nil {
		return budget{}, fmt.Errorf("encode budget: %w", err)
	}
	next, err := l.write(ctx, key, value, rev)
	if err != nil {
		return budget{}, err
	}
	l.noteBudget(token, b, next)
	return b, nil
}

// reloadBudget reads the tenant's budget key after a lost race, rather
// than wait for the watch.
func (l *Limiter) reloadBudget(ctx context.Context, token, key string) error {
	l.stats.kvOps.Add(1)
	entry, err := l.kv.Get(ctx, key)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return nil
	case err != nil:
		return fmt.Errorf("ratelimit: read %s: %w", key, err)
	}
	b, err := decodeBudget(entry.Value())
	if err != nil {
		return fmt.Errorf("ratelimit: read %s (delete the key to reset it): %w", key, err)
	}
	l.noteBudget(token, b, entry.Revision())
	return nil
}

// noteBudget records the budget of the tenant with token at revision rev,
// unless a newer one is known, and tells Config.OnBudget.
func (l *Limiter) noteBudget(token string, b budget, rev uint64) {
	l.mu.Lock()
	old, had := l.budgets[token]
	if had && rev <= old.rev {
		l.mu.Unlock()
		return
	}
	l.budgets[token] = budgetState{b: b, rev: rev}
	l.mu.Unlock()
	if l.cfg.OnBudget != nil && (!had || old.b.Learned != b.Learned) {
		l.cfg.OnBudget(tokenID(token), b.within(l.cfg.Rate).Learned)
	}
}

// forgetBudget drops the budget of the tenant with token (its key was
// deleted: the full rate again) at revision rev.
func (l *Limiter) forgetBudget(token string, rev uint64) {
	l.mu.Lock()
	old, had := l.budgets[token]
	if !had || rev <= old.rev {
		l.mu.Unlock()
		return
	}
	delete(l.budgets, token)
	l.mu.Unlock()
	if l.cfg.OnBudget != nil {
		l.cfg.OnBudget(tokenID(token), float64(l.cfg.Rate.N))
	}
}

// later is the later of a and b.
func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// round2 rounds x to two decimals, for log lines.
func round2(x float64) float64 { return float64(int64(x*100+0.5)) / 100 }
