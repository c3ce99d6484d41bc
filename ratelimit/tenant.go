package ratelimit

import (
	"slices"
	"sync/atomic"
	"time"
)

// tenant is a Limiter's local state for one tenant: the goroutines waiting
// for a permit, the permits granted but not yet handed out, and a cache of
// the shared window log.
type tenant struct {
	id    string // as the caller gave it, for logs
	token string // key token of id
	key   string // window key in the bucket

	// Guarded by Limiter.mu.
	queue    []*waiter     // goroutines waiting for a permit, first come first served
	pool     []pooled      // permits granted but not handed out, soonest to expire first
	fixes    []fix         // stamps to move later, for calls written after their stamp (see Wrote)
	fetching bool          // a fetch goroutine is serving queue and fixes
	wake     chan struct{} // capacity 1; signalled when a waiter leaves queue or a fix arrives

	// The window log as last read, written or watched, newest revision
	// wins. A stale cache costs one conflict, never a wrong grant, because
	// every write is conditional on rev.
	known      bool          // the cache holds the log (or its absence, rev 0)
	rev        uint64        // revision of the log; 0 when the key is absent
	grants     []grant       // the log's grants
	pace       int64         // the log's pacing time (windowLog.Pace)
	since      int64         // when the log's run of grants began (windowLog.Since)
	fresh      chan struct{} // closed and replaced when the cache advances
	warnedRate atomic.Bool   // a rate mismatch with other writers was logged
}

// remember records the window log at revision rev, unless the cache
// already holds a newer one, and wakes a fetch waiting for news.
func (t *tenant) remember(rev uint64, w windowLog) {
	if t.known && rev <= t.rev {
		return
	}
	t.known, t.rev, t.grants, t.pace, t.since = true, rev, w.Grants, w.Pace, w.Since
	close(t.fresh)
	t.fresh = make(chan struct{})
}

// slot is what one granted permit is: usable until until, and recorded in
// the window log as a grant whose Until is stamp.
type slot struct {
	until time.Time
	stamp int64
}

// fix moves one permit's stamp in the window log from from to to (Unix
// milliseconds), for a call written later than its stamp allowed.
type fix struct {
	from, to int64
}

// waiter is one goroutine blocked in Wait. The fetch goroutine sets slot
// or err, then closes done.
type waiter struct {
	done chan struct{}
	slot slot
	err  error
}

// pooled is n permits of one slot.
type pooled struct {
	n int
	slot
}

// take removes one unexpired permit from the pool. It reports how many
// expired permits it threw away on the way.
func (t *tenant) take(now time.Time) (s slot, ok bool, expired int) {
	for len(t.pool) > 0 {
		p := &t.pool[0]
		if !now.Before(p.until) {
			expired += p.n
			t.pool = t.pool[1:]
			continue
		}
		p.n--
		s = p.slot
		if p.n == 0 {
			t.pool = t.pool[1:]
		}
		return s, true, expired
	}
	return slot{}, false, expired
}

// deliver hands n permits of s to the oldest waiters and pools whatever
// is left.
func (t *tenant) deliver(n int, s slot) {
	for n > 0 && len(t.queue) > 0 {
		w := t.queue[0]
		t.queue[0] = nil
		t.queue = t.queue[1:]
		w.slot = s
		close(w.done)
		n--
	}
	if n > 0 {
		t.pool = append(t.pool, pooled{n: n, slot: s})
	}
}

// putBack returns one unused permit to the pool, keeping the pool in the
// order the permits expire.
func (t *tenant) putBack(s slot) {
	i, _ := slices.BinarySearchFunc(t.pool, s.until, func(p pooled, u time.Time) int { return p.until.Compare(u) })
	t.pool = slices.Insert(t.pool, i, pooled{n: 1, slot: s})
}

// fail ends every queued wait with err.
func (t *tenant) fail(err error) {
	for _, w := range t.queue {
		w.err = err
		close(w.done)
	}
	t.queue = nil
}

// signal wakes the fetch goroutine if it is idle.
func (t *tenant) signal() {
	select {
	case t.wake <- struct{}{}:
	default:
	}
}

// leave removes w from the queue and tells the fetch goroutine, which
// stops when nobody is left waiting.
func (t *tenant) leave(w *waiter) {
	for i, q := range t.queue {
		if q == w {
			t.queue = append(t.queue[:i], t.queue[i+1:]...)
			break
		}
	}
	t.signal()
}
