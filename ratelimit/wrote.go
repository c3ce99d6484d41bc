package ratelimit

import (
	"slices"
	"time"
)

// Graph counts a call when it arrives, and the window log counts it until
// its stamp: the latest time its permit allowed it to start. A call that
// arrives later than that could share a window with a call granted a full
// window after the stamp. Wrote and Answered move the stamp of such a call
// in the shared log, before any grant could rely on the old one: that
// grant comes a whole window after the stamp, the move within a KV round
// trip of the write (or of the answer). Only a process that stalls for a
// whole window between writing a call and that update can still break the
// bound.

// Wrote tells the Limiter that the call p let go was written to the
// network at sent, read on the local clock (that of Config.Clock). A call
// written after its permit's stamp (behind a new TLS connection, on a
// host starved of CPU, after a lease renewal) has its stamp moved to sent.
//
// Wrote also tracks the recent worst gap from Take to the write (as Sent
// does), so that later permits are stamped that much later and few calls
// need moving. Call it from the HTTP client's WroteRequest trace hook: it
// does not block, the update is made by the tenant's fetch goroutine. A
// second call for the same Permit, or one for a Permit of an unlimited
// Rate, does nothing. It is safe for concurrent use.
func (l *Limiter) Wrote(p Permit, sent time.Time) {
	u := p.use
	if u == nil || sent.IsZero() {
		return
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if !u.sent.IsZero() {
		return
	}
	u.sent = sent
	l.Sent(sent.Sub(u.given))
	l.move(u, l.clock.ToServer(sent))
}

// Answered tells the Limiter that the answer to the call p let go began
// to arrive at at (local clock), after Wrote. How long the call took
// beyond the least such time seen recently bounds how much later than it
// was written it may have reached Graph: a Graph (or a network, or a
// stand-in on a loaded host) that is slow to read a call is also slow to
// answer it. A call answered later than that by more than half the Margin
// has its stamp moved by the rest of the excess (up to a tenth of the
// window less half the Margin). Call it from the GotFirstResponseByte
// trace hook; it does not block. It is safe for concurrent use.
func (l *Limiter) Answered(p Permit, at time.Time) {
	u := p.use
	if u == nil || at.IsZero() {
		return
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.sent.IsZero() || u.done {
		return
	}
	u.done = true
	rtt := at.Sub(u.sent)
	least := l.noteAnswer(rtt)
	l.noteMean(rtt)
	// Half the Margin is left for the least answer's own way in; the
	// other half is what any call may be late by without a move.
	excess := min(rtt-least, l.cfg.Rate.Per/10) - l.cfg.Margin/2
	if excess <= 0 {
		return
	}
	l.move(u, l.clock.ToServer(u.sent).Add(excess))
}

// noteAnswer folds one write-to-answer time into answerRTT, the least
// recently seen: a faster answer counts at once, slower ones raise it by
// a quarter of the difference, so that it follows a Graph whose latency
// grew. It starts from zero, not from the first answer: the first calls of
// a process (new connections, every worker starting at once) are the
// slowest, and taking one of them as the least would let the others pass
// for prompt. From zero, the first ten or so answers of a process count as
// late, and move their stamps, by at most a tenth of the window each.
// It returns the new value.
func (l *Limiter) noteAnswer(d time.Duration) time.Duration {
	for {
		old := l.answerRTT.Load()
		next := int64(max(d, 0))
		if next > old {
			next = old + (next-old)/4
		}
		if l.answerRTT.CompareAndSwap(old, next) {
			return time.Duration(next)
		}
	}
}

// noteMean folds one write-to-answer time into answerMean, a moving
// average over about eight answers; the first answer is taken as it is.
func (l *Limiter) noteMean(d time.Duration) {
	for {
		old := l.answerMean.Load()
		next := int64(max(d, 0))
		if old > 0 {
			next = old + (next-old)/8
		}
		if l.answerMean.CompareAndSwap(old, next) {
			return
		}
	}
}

// move queues the stamp of u to move to arrived (server clock) plus the
// clock's error, if that is later than the stamp, and wakes the tenant's
// fetch goroutine to write it. Guarded by u.mu.
func (l *Limiter) move(u *permitUse, arrived time.Time) {
	need := untilMillis(arrived.Add(l.skew()))
	if need <= u.stamp {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return
	}
	t := u.t
	t.fixes = append(t.fixes, fix{from: u.stamp, to: need})
	u.stamp = need
	l.stats.moved.Add(1)
	if t.fetching {
		t.signal()
		return
	}
	t.fetching = true
	l.wg.Add(1)
	go l.fetch(t)
}

// takeFixes removes and returns t's pending fixes, dropping those that no
// longer matter: a stamp that has left every window a grant counts.
// Guarded by Limiter.mu.
func (l *Limiter) takeFixes(t *tenant, now time.Time) []fix {
	horizon := now.Add(-l.window - l.skew()).UnixMilli()
	fixes := slices.DeleteFunc(t.fixes, func(f fix) bool { return f.to <= horizon })
	t.fixes = nil
	return fixes
}

// restoreFixes puts fixes that could not be written back in front of any
// that arrived meanwhile. Guarded by Limiter.mu.
func (t *tenant) restoreFixes(fixes []fix) {
	t.fixes = append(fixes, t.fixes...)
}

// applyFixes returns grants with each fix applied: one permit of a grant
// stamped fix.from (if the log still holds one) moves to a grant of its
// own stamped fix.to. grants is not modified.
func applyFixes(grants []grant, fixes []fix) []grant {
	out := slices.Clone(grants)
	for _, f := range fixes {
		for i := range out {
			if out[i].Until == f.from && out[i].N > 0 {
				out[i].N--
				break
			}
		}
		if n := len(out); n > 0 && out[n-1].Until == f.to {
			out[n-1].N++
			continue
		}
		out = append(out, grant{Until: f.to, N: 1})
	}
	return out
}
