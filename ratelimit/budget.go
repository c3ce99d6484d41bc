package ratelimit

import (
	"encoding/json"
	"fmt"
	"math"
	"time"
)

// The shape of the learned budget; see the package documentation
// ("Learning the budget") for where each comes from.
const (
	// cutFactor is the multiplicative decrease when a 429 tells nothing
	// about how much Graph accepted: CUBIC's (and the AWS SDKs') beta.
	cutFactor = 0.7
	// deepestCut bounds one cut from an estimate: at most halve the rate,
	// so that one odd 429 (another app's burst) cannot zero the budget.
	deepestCut = 0.5
	// cubicScale is CUBIC's C in units of the configured N per window³,
	// for the climb from a cut without an estimate back to the wall: from
	// 0.7 of it within 12 windows of use, from half within 14.
	cubicScale = 2e-4
	// holdWindows is how many windows of use the rate holds at a wall that
	// Graph confirmed before it probes above it. A probe that meets the
	// wall pauses the tenant for a Graph answer and a Retry-After of whole
	// seconds: measured at 20/2s with Graph at 300 ms, 0.2 to 0.9 s, a
	// tenth to a half of a window. Probing about once per eleven windows
	// costs 1–4% of the budget. It is the longest hold that still finds a
	// budget that grew (the other app stopped) within 30 s at 20/2s, the
	// acceptance of issue 16, with room: 95% of N from half of it 12.1
	// windows after the last cut (see curve), 24 s.
	holdWindows = 10
	// idleWindows is how long without a grant, in windows, makes a probe
	// above the wall stale: see budget.grow.
	idleWindows = 2
	// minLearned is the least the learned rate falls to, in calls per
	// window: a tenant is never stopped by learning alone.
	minLearned = 1.0
	// logChange is the relative change of the learned rate that is worth
	// a log line.
	logChange = 0.2
)

// budget is the learned rate of one (app, tenant), the JSON value at
// "budget.<app>.<tenant>". It lives as long as the bucket keeps the key, so
// that a fleet starting cold begins from what it last learned. A missing
// key is a budget of the full configured rate.
type budget struct {
	// Rate is the configured rate the budget was learned within.
	Rate string `json:"rate"`
	// Learned is the calls per window the fleet allows itself now.
	Learned float64 `json:"learned"`
	// Wall is the rate Graph last confirmed as the budget (CUBIC's W_max:
	// its estimate of what it accepted, or the rate that met the 429),
	// and Start the rate the cut left; growth climbs from Start back to
	// Wall, holds there for holdWindows and then probes above it (see
	// curve).
	Wall  float64 `json:"wall"`
	Start float64 `json:"start"`
	// Active counts the windows of use since the cut: the growth clock,
	// which stands still while the tenant is idle.
	Active float64 `json:"active"`
	// CutAt is when the last cut was made, EpisodeUntil when its pause
	// ended: a 429 to a call let go before then belongs to the same
	// episode and does not cut again.
	CutAt        time.Time `json:"cutAt"`
	EpisodeUntil time.Time `json:"episodeUntil"`
	// CutFrom is when the throttled call the cut's estimate came from was
	// let go: a 429 of the same episode to a call let go earlier counts
	// from an earlier point, without the calls between that Graph refused
	// too, and may refine the estimate (see refine).
	CutFrom time.Time `json:"cutFrom,omitzero"`
	// GrownAt is when the growth clock last advanced.
	GrownAt time.Time `json:"grownAt"`
	// Estimate is what the last cut estimated Graph accepted in one
	// window (-1: no estimate), for people.
	Estimate int `json:"estimate"`
	// Unsure is how many calls of the throttled call's own band (permits
	// granted with it, see Limiter.estimate) the estimate counted as
	// accepted without knowing: each 429 of the episode to another call
	// of that band says one was not, and takes one call off (refused).
	Unsure int `json:"unsure,omitempty"`
	// Cuts counts the cuts since the key was created.
	Cuts int `json:"cuts"`
	// Logged is the learned rate at the last log line about it.
	Logged float64 `json:"logged"`
	// Owner and At name the last writer and when it wrote.
	Owner string    `json:"owner"`
	At    time.Time `json:"at"`
}

// fullBudget is the budget of a tenant that has never been throttled: the
// whole configured rate.
func fullBudget(r Rate) budget {
	n := float64(r.N)
	return budget{Rate: r.String(), Learned: n, Wall: n, Start: n, Estimate: -1, Logged: n}
}

// calls is the number of permits the budget allows per window: the learned
// rate rounded down, at least one and at most N.
func (b budget) calls(r Rate) int {
	return min(r.N, max(1, int(math.Floor(b.Learned+1e-9))))
}

// sameEpisode reports whether a 429 to a call let go at started belongs to
// the episode of the last cut.
func (b budget) sameEpisode(started time.Time) bool {
	return b.Cuts > 0 && started.Before(b.EpisodeUntil)
}

// cut is the budget after Graph throttled a call: estimate is how many of
// the fleet's calls Graph accepted in the window that ended with the 429
// (-1 when unknown), episodeUntil when the pause it caused ends. An
// estimate below the current rate is believed, within deepestCut; without
// one the rate is multiplied by cutFactor. Either way the rate falls by at
// least a call, never below minLearned.
func (b budget) cut(r Rate, now time.Time, estimate int, episodeUntil time.Time) budget {
	current := b.Learned
	next, wall := current*cutFactor, current
	if estimate >= 0 && float64(estimate) < current {
		next = max(float64(estimate), current*deepestCut)
		wall = next
	}
	next = max(minLearned, min(next, current-1))
	wall = max(wall, next)
	b.Rate = r.String()
	b.Learned, b.Wall, b.Start = next, wall, next
	b.Active, b.CutAt, b.GrownAt = 0, now, now
	b.EpisodeUntil = episodeUntil
	b.Estimate = estimate
	b.Cuts++
	return b
}

// refine is the budget after a 429 of the cut's own episode to a call let
// go at started, before the call the cut estimated from, whose estimate is
// lower: the calls let go in between were throttled too, not accepted as
// the cut's estimate assumed. It lowers the rate to the new estimate
// (within deepestCut of the cut's, and never below minLearned) and
// reports whether that changed the rate. The episode, its pause and the
// growth clock stay as they are.
// refused is the budget after a 429 of the cut's own episode to another
// call of the band the cut's estimate counted as accepted (Unsure): Graph
// accepted one call fewer than the estimate said. It reports false when
// the estimate counted no call it was unsure of, or none is left.
func (b budget) refused() (budget, bool) {
	if b.Unsure <= 0 {
		return b, false
	}
	b.Unsure--
	next := max(minLearned, b.Learned-1)
	if next >= b.Learned {
		return b, false
	}
	b.Learned, b.Start, b.Wall = next, next, next
	b.Estimate--
	return b, true
}

// inBand reports whether a call let go at started was granted in the same
// band as the call the cut estimated from (CutFrom), within tolerance.
func (b budget) inBand(started time.Time, tolerance time.Duration) bool {
	if b.CutFrom.IsZero() {
		return false
	}
	d := started.Sub(b.CutFrom)
	return d <= tolerance && d >= -tolerance
}

func (b budget) refine(started time.Time, estimate int) (budget, bool) {
	if b.CutFrom.IsZero() || !started.Before(b.CutFrom) || estimate < 0 {
		return b, false
	}
	next := max(minLearned, b.Learned*deepestCut, float64(estimate))
	if next >= b.Learned {
		return b, false
	}
	b.CutFrom = started
	b.Learned, b.Start, b.Wall = next, next, next
	b.Estimate = estimate
	return b, true
}

// grow advances the growth clock to now after a grant, counting at most
// one window since the last advance (an idle tenant does not grow), and
// sets the learned rate from the curve. It reports false, leaving b as it
// is, when the budget is full or the clock advanced less than half a
// window ago: growth is written at most twice per window.
//
// A probe above the wall that has gone idleWindows without a grant is
// stale: no window has tried it since, and a fleet resuming (or restarted
// from the bucket) would send its first window's burst into a wall that
// may still be there. The probe starts again from the wall, one call
// above it half a window later, as TCP validates its window after an idle
// period (RFC 7661). Reaching N ends the probing: no wall is known any
// more, and the budget is full again until the next 429.
func (b budget) grow(r Rate, now time.Time) (budget, bool) {
	n := float64(r.N)
	elapsed := now.Sub(b.GrownAt)
	if b.Learned >= n || elapsed < r.Per/2 {
		return b, false
	}
	b.GrownAt = now
	if b.Learned > b.Wall && elapsed >= idleWindows*r.Per {
		b.Active = b.climb(n) + holdWindows
		b.Learned = b.Wall
		return b, true
	}
	b.Active += min(elapsed.Seconds()/r.Per.Seconds(), 1)
	b.Learned = min(n, b.curve(n))
	if b.Learned >= n {
		b.Wall, b.Start = n, n
	}
	return b, true
}

// climb is CUBIC's K: the windows of use the concave part of the curve
// takes from Start back up to Wall, within a configured rate of n.
func (b budget) climb(n float64) float64 {
	return math.Cbrt(max(b.Wall-b.Start, 0) / (cubicScale * n))
}

// curve is the learned rate, in calls per window of a configured rate of
// n, after Active windows of growth since the cut. It has three parts:
//
//   - From Start up to Wall, CUBIC's concave climb, fast at first and
//     flat near the wall. Only a cut without an estimate leaves Start
//     below Wall: an estimate is Graph's own count, so the rate resumes
//     at it.
//   - At Wall for holdWindows: the budget Graph confirmed is used in
//     full, and nothing is spent on probes, which each cost a pause.
//   - Then above Wall by 4^x − 1 after x more windows: one call, then 3,
//     7, 15, 31 at each half window, the excess doubling (plus one) with
//     each growth step that Graph does not refuse, as in TCP's slow
//     start. A wall that is still there is met by a single call over it,
//     half a window after the hold; a budget that grew is found within a
//     few steps: from a wall at half of N, 95% of N 2.1 windows after
//     the hold.
//
// A pure cubic cannot both probe rarely and find a grown budget fast: its
// time to one call above the wall is cbrt(1/C), and to 18 above it
// cbrt(18/C), only 2.6 times longer.
func (b budget) curve(n float64) float64 {
	c := cubicScale * n
	switch x := b.Active - b.climb(n); {
	case x <= 0:
		return b.Wall + c*x*x*x
	case x <= holdWindows:
		return b.Wall
	default:
		return b.Wall + math.Exp2(2*(x-holdWindows)) - 1
	}
}

// worthLogging reports whether the learned rate moved by more than
// logChange since the last log line.
func (b budget) worthLogging() bool {
	return b.Logged <= 0 || math.Abs(b.Learned-b.Logged) > logChange*b.Logged
}

// decodeBudget reads a stored budget, refusing one that cannot be used.
func decodeBudget(data []byte) (budget, error) {
	var b budget
	if err := json.Unmarshal(data, &b); err != nil {
		return budget{}, fmt.Errorf("decode budget: %w", err)
	}
	if math.IsNaN(b.Learned) || b.Learned <= 0 {
		return budget{}, fmt.Errorf("decode budget: learned rate %v is not positive", b.Learned)
	}
	return b, nil
}

// within returns b as a budget of the configured rate r. A budget learned
// under another rate (the fleet was reconfigured) keeps its calls per
// second, scaled to r's window and capped at r.
func (b budget) within(r Rate) budget {
	if b.Rate == r.String() {
		return b
	}
	old, err := ParseRate(b.Rate)
	if err != nil || old.Unlimited() || r.Unlimited() {
		return fullBudget(r)
	}
	scale := r.Per.Seconds() / old.Per.Seconds()
	n := float64(r.N)
	b.Rate = r.String()
	b.Learned = min(n, max(minLearned, b.Learned*scale))
	b.Wall = min(n, max(b.Learned, b.Wall*scale))
	b.Start = min(b.Learned, b.Start*scale)
	b.Logged = b.Learned
	return b
}
