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
