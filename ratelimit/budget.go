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
	// cubicScale is CUBIC's C in units of the configured N per window³:
	// one call above the wall at 20/2s after 5 windows of use, back from
	// half to 95% of N within 14.
	cubicScale = 2e-4
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
	// Wall is the rate at which Graph last said no (CUBIC's W_max), and
	// Start the rate the cut left; growth climbs from Start back to Wall
	// and then probes above it.
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
func (b budget) grow(r Rate, now time.Time) (budget, bool) {
	n := float64(r.N)
	elapsed := now.Sub(b.GrownAt)
	if b.Learned >= n || elapsed < r.Per/2 {
		return b, false
	}
	b.Active += min(elapsed.Seconds()/r.Per.Seconds(), 1)
	b.GrownAt = now
	b.Learned = min(n, b.curve(n))
	return b, true
}

// curve is CUBIC's window after Active windows of growth: concave from
// Start up to Wall, flat near it, then convex beyond it, in calls per
// window.
func (b budget) curve(n float64) float64 {
	c := cubicScale * n
	k := math.Cbrt(max(b.Wall-b.Start, 0) / c)
	return b.Wall + c*math.Pow(b.Active-k, 3)
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
