package ratelimit

import (
	"slices"
	"sync"
	"time"
)

// Graph counts a call when it arrives, and the window log counts it until
// its stamp: the latest time its permit allowed it to start. A call that
// arrives later than that could share a window with a call granted a full
// window after the stamp. Wrote and Answered move the stamp of such a call
// in the shared log, before any grant could rely on the old one: that
// grant comes a whole window after the stamp, the move within a KV round
// trip of the write (or of the answer). A call still in flight half a
// window after its stamp has it moved to the present, and again every
// half window, until it is answered or Ended (see keepInFlight). Only a
// process that stalls for half a window before such an update can still
// break the bound.

// Wrote tells the Limiter that the call p let go was written to the
// network at sent, read on the local clock (that of Config.Clock). A call
// written after its permit's stamp (behind a new TLS connection, on a
// host starved of CPU, after a lease renewal) has its stamp moved to sent.
// Until Answered or Ended, the call counts as in flight (see
// keepInFlight).
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
	l.keepInFlight(u)
}

// maxInFlight is how long after its write a call unanswered and not
// Ended is still taken to be in flight: the Graph client gives up on a
// call after 30 s.
const maxInFlight = time.Minute

// keepInFlight arms u's timer to move its stamp half a window after the
// stamp, or after now if that is later, unless the call has been in
// flight for maxInFlight by then. An unanswered call may reach Graph at
// any moment, and a grant relying on its stamp comes a whole window
// after it: moving the stamp to now every half window, while the call
// is in flight, keeps that grant from coming before the answer can move
// the stamp to where the call arrived. Only calls slower than half a
// window need it. Guarded by u.mu.
func (l *Limiter) keepInFlight(u *permitUse) {
	now := time.Now()
	at := l.clock.ToLocal(time.UnixMilli(u.stamp))
	if at.Before(now) {
		at = now
	}
	at = at.Add(l.window / 2)
	if at.Sub(u.sent) > maxInFlight {
		return
	}
	u.keep = time.AfterFunc(at.Sub(now), func() { l.stillInFlight(u) })
}

// stillInFlight moves the stamp of a call still unanswered to now, and
// arms the next move.
func (l *Limiter) stillInFlight(u *permitUse) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.done || l.ctx.Err() != nil {
		return
	}
	l.moveStamp(u, l.now())
	l.keepInFlight(u)
}

// stopKeeping ends the moves of keepInFlight. Guarded by u.mu.
func (u *permitUse) stopKeeping() {
	if u.keep != nil {
		u.keep.Stop()
	}
}

// Ended tells the Limiter that the call p let go is over at at (local
// clock): answered, failed, timed out or given up. A call that was
// written but never answered may have reached Graph until then, so its
// stamp is moved there, less half the Margin; one that was answered has
// been accounted for by Answered. Either way its stamp is no longer
// moved along (see Wrote). Call it once the Graph call has returned; it
// does not block. A call not Ended is taken to be over a minute after it
// was written. It is safe for concurrent use.
func (l *Limiter) Ended(p Permit, at time.Time) {
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
	u.stopKeeping()
	l.move(u, l.clock.ToServer(at).Add(-l.cfg.Margin/2))
}

// Answered tells the Limiter that the answer to the call p let go began
// to arrive at at (local clock), after Wrote. The call reached Graph
// before that, and no later than at less the least write-to-answer time
// seen over the last leastSpan: a Graph (or a network, or a stand-in on a
// loaded host) that is slow to read a call is not faster than that to
// answer it. A call answered so late that its stamp is earlier than that,
// less half the Margin, has its stamp moved there, however far: a call
// Graph read 300 ms late counts 300 ms late. Call it from the
// GotFirstResponseByte trace hook; it does not block. It is safe for
// concurrent use.
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
	u.stopKeeping()
	rtt := at.Sub(u.sent)
	least := l.least.note(at, rtt)
	l.noteMean(rtt)
	// Half the Margin is left for the least answer's own way in; the
	// other half is what any call may be late by without a move.
	l.move(u, l.clock.ToServer(at).Add(-least-l.cfg.Margin/2))
}

// leastSpan is how long a write-to-answer time counts towards the least:
// like the minimum-RTT filter of TCP BBR, long enough that a spell of slow
// answers (a loaded host, every worker starting at once) does not pass for
// Graph's own latency, short enough to follow a Graph whose latency grew.
// An overestimate would let late calls pass for prompt and break the
// bound; an underestimate only moves more stamps than needed.
const leastSpan = 10 * time.Second

// leastSlots is the number of parts of leastSpan the filter keeps a least
// for.
const leastSlots = 10

// leastWarm is how many parts of leastSpan with answers a new filter
// counts as zero (see leastFilter).
const leastWarm = 3

// leastFilter is the least write-to-answer time over the last leastSpan
// in which answers came: the least of each of the parts of leastSpan that
// saw an answer, the current one and the leastSlots before it. A Limiter
// idle for a while thus keeps what it knew; its first answers after the
// idle spell are judged by it.
//
// It starts from zero: the first calls of a process (new connections,
// every worker starting at once) are its slowest, and taking them for the
// least would let the others pass for prompt, so for its first leastWarm
// parts with answers they move their stamps to their answers. Not for the
// whole leastSpan: with Graph taking 300 ms at 20/2s, ten seconds of
// answers taken as late cost every process a ninth of its budget for
// them (bench: the shared-budget batch 1.12x the perfect time, 1.08x with
// three parts), while under -race and six busy loops the 10-tenant test
// kept its windows in 14 of 14 runs with three parts (1 of 12 broke with
// none). The zero value is ready to use; it is safe for concurrent use.
type leastFilter struct {
	mu    sync.Mutex
	slots [leastSlots + 1]leastSlot // a ring; next is the oldest
	next  int
}

// leastSlot is the least time answered in the part epoch of leastSpan.
type leastSlot struct {
	epoch int64 // at.UnixNano() / (leastSpan/leastSlots); 0 before any
	least time.Duration
}

// note folds one write-to-answer time d, answered at at (local clock),
// into f and returns the least over the filter, d included.
func (f *leastFilter) note(at time.Time, d time.Duration) time.Duration {
	d = max(d, 0)
	epoch := at.UnixNano() / int64(leastSpan/leastSlots)
	f.mu.Lock()
	defer f.mu.Unlock()
	newest := &f.slots[(f.next+len(f.slots)-1)%len(f.slots)]
	if epoch > newest.epoch {
		// A new part: it replaces the oldest.
		f.slots[f.next] = leastSlot{epoch: epoch, least: d}
		f.next = (f.next + 1) % len(f.slots)
	} else {
		// This part, or an answer told late: either way the newest
		// part holds it.
		newest.least = min(newest.least, d)
	}
	least, seen := d, 0
	for _, s := range f.slots {
		if s.epoch != 0 {
			least, seen = min(least, s.least), seen+1
		}
	}
	if seen <= leastWarm {
		return 0
	}
	return least
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

// move moves the stamp of a call that arrived late (see moveStamp) and
// counts it in Stats.Moved. Guarded by u.mu.
func (l *Limiter) move(u *permitUse, arrived time.Time) {
	if l.moveStamp(u, arrived) {
		l.stats.moved.Add(1)
	}
}

// moveStamp queues the stamp of u to move to arrived (server clock) plus
// the clock's error, if that is later than the stamp, and wakes the
// tenant's fetch goroutine to write it. It reports whether it did.
// Guarded by u.mu.
func (l *Limiter) moveStamp(u *permitUse, arrived time.Time) bool {
	need := untilMillis(arrived.Add(l.skew()))
	if need <= u.stamp {
		return false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return false
	}
	t := u.t
	t.fixes = append(t.fixes, fix{from: u.stamp, to: need})
	u.stamp = need
	if t.fetching {
		t.signal()
		return true
	}
	t.fetching = true
	l.wg.Add(1)
	go l.fetch(t)
	return true
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
