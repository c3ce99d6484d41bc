package ratelimit

import (
	"math"
	"time"
)

// paceFactor is how much faster than the learned rate a fleet may start
// calls once its burst is spent. One, the learned rate itself: Graph
// answers a 429 only after its latency, and every call sent meanwhile
// meets the same wall, so the overshoot is the pace times the latency.
// Measured with a fleet told 40/2s against a real 20/2s and Graph taking
// 300 ms, twice the pace made twice the 429s (12 against 6 in the first
// window).
const paceFactor = 1

// pace is the fleet-wide pacing of one tenant's grants, a generic cell
// rate algorithm (GCRA, the token bucket as one timestamp) kept in the
// window log: each permit moves the theoretical arrival time tat on by
// interval, and a grant may start while tat is at most tolerance ahead
// of now. The sliding window still bounds every window; pacing only
// spreads a backlog's first window, so that a budget lower than the
// learned one is found after a few calls rather than after a burst.
type pace struct {
	interval  time.Duration // time per permit: Per / (paceFactor × learned)
	tolerance time.Duration // (burst − 1) × interval
}

// newPace paces calls permits per window of per, allowing burst at once.
func newPace(calls, burst int, per time.Duration) pace {
	interval := time.Duration(float64(per) / (paceFactor * float64(max(calls, 1))))
	return pace{interval: interval, tolerance: time.Duration(max(burst, 1)-1) * interval}
}

// atLeast returns p with at least interval between permits. The
// tolerance stays: a longer interval with a tolerance to match would let
// a second burst through as soon as the interval grew.
func (p pace) atLeast(interval time.Duration) pace {
	p.interval = max(p.interval, interval)
	return p
}

// coldInFlight is how many calls a tenant that has learned nothing may
// have on their way to Graph at once at the start of a run of grants: a
// budget lower than the configured one is found by the calls in flight
// when the first 429 comes back, all of which meet the same wall. It
// doubles with each window of the run, so that a budget that is all ours
// is used in full after a few windows; three is 10 calls a second with
// Graph at 300 ms, all of 200/20s.
const coldInFlight = 3

// coldInterval is the least time between permits for the tenant with
// token, whose current run of grants began at since (Unix ms), while it
// has learned nothing (no budget key): the recent mean time Graph takes
// to answer over the calls that may be in flight (coldInFlight, doubled
// for each whole window since the run began). Zero when it does not
// apply.
func (l *Limiter) coldInterval(token string, now time.Time, since int64) time.Duration {
	if _, rev := l.budgetOf(token); rev != 0 || since == 0 {
		return 0
	}
	answer := time.Duration(l.answerMean.Load())
	windows := now.Sub(time.UnixMilli(since)) / l.cfg.Rate.Per
	if answer <= 0 || windows >= 10 {
		return 0
	}
	return answer / time.Duration(coldInFlight<<windows)
}

// allow returns how many of want permits may be granted at now given the
// stored tat (zero: none yet), the new tat once they are, and, when fewer
// than need fit, when need will.
func (p pace) allow(tat, now time.Time, want, need int) (n int, next, retryAt time.Time) {
	if p.interval <= 0 {
		return want, tat, time.Time{}
	}
	if tat.Before(now) {
		tat = now
	}
	fit := int(math.Floor(float64(now.Add(p.tolerance).Sub(tat))/float64(p.interval))) + 1
	if fit < need {
		return 0, tat, tat.Add(-p.tolerance).Add(time.Duration(need-1) * p.interval)
	}
	n = min(want, fit)
	return n, tat.Add(time.Duration(n) * p.interval), time.Time{}
}
