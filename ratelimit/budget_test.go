package ratelimit

import (
	"math"
	"testing"
	"time"
)

// TestBudgetCut is the decrease: believe Graph's count where there is one,
// within a halving; else multiply by cutFactor; always at least a call
// less, never below minLearned.
func TestBudgetCut(t *testing.T) {
	r := Rate{N: 40, Per: 2 * time.Second}
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	until := now.Add(2 * time.Second)
	at := func(learned float64) budget { b := fullBudget(r); b.Learned = learned; return b }
	for _, tc := range []struct {
		name             string
		from             budget
		estimate         int
		learned, wall    float64
		wantCallsAllowed int
	}{
		{"Graph accepted 20 of a full budget: 20", fullBudget(r), 20, 20, 20, 20},
		{"an estimate below half: halve", fullBudget(r), 5, 20, 20, 20},
		{"no estimate: times 0.7, the wall where it was", fullBudget(r), -1, 28, 40, 28},
		{"an estimate at or above the rate is no estimate", at(20), 20, 14, 20, 14},
		{"a probe one call over the wall: back to the wall", at(21.3), 20, 20, 20, 20},
		{"never below one call", at(1.2), 0, 1, 1, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.from.cut(r, now, tc.estimate, until)
			if math.Abs(got.Learned-tc.learned) > 1e-9 || math.Abs(got.Wall-tc.wall) > 1e-9 || got.Start != got.Learned {
				t.Errorf("cut = learned %v wall %v start %v, want learned %v wall %v", got.Learned, got.Wall, got.Start, tc.learned, tc.wall)
			}
			if got.calls(r) != tc.wantCallsAllowed {
				t.Errorf("calls = %d, want %d", got.calls(r), tc.wantCallsAllowed)
			}
			if got.Cuts != tc.from.Cuts+1 || !got.CutAt.Equal(now) || !got.EpisodeUntil.Equal(until) || got.Active != 0 || got.Estimate != tc.estimate {
				t.Errorf("cut = %+v: want one more cut at now, its episode until the pause ends, the growth clock reset", got)
			}
		})
	}
}

// TestBudgetEpisode: only a call let go after the last cut's pause can
// cut again.
func TestBudgetEpisode(t *testing.T) {
	r := Rate{N: 40, Per: 2 * time.Second}
	now := time.Now()
	if fullBudget(r).sameEpisode(now) {
		t.Error("a budget never cut has no episode")
	}
	b := fullBudget(r).cut(r, now, 20, now.Add(time.Second))
	for _, tc := range []struct {
		started time.Time
		same    bool
	}{
		{now.Add(-time.Second), true},
		{now.Add(999 * time.Millisecond), true},
		{now.Add(time.Second), false},
		{now.Add(time.Minute), false},
	} {
		if got := b.sameEpisode(tc.started); got != tc.same {
			t.Errorf("sameEpisode(cut %+v) = %t, want %t", tc.started.Sub(now), got, tc.same)
		}
	}
}

// TestBudgetGrowth is CUBIC's curve, clocked by windows of use.
func TestBudgetGrowth(t *testing.T) {
	r := Rate{N: 40, Per: 2 * time.Second}
	cutAt := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

	t.Run("from an estimate: flat near the wall, then up to N within 15 windows", func(t *testing.T) {
		b := fullBudget(r).cut(r, cutAt, 20, cutAt)
		now := cutAt
		var calls []int
		for range 16 {
			now = now.Add(r.Per)
			next, ok := b.grow(r, now)
			if !ok && b.Learned < 40 {
				t.Fatalf("no growth after a window at %v", b.Learned)
			}
			b = next
			calls = append(calls, b.calls(r))
		}
		t.Logf("calls per window after each window of use: %v", calls)
		if calls[3] != 20 {
			t.Errorf("after 4 windows the budget allows %d calls, want still the wall's 20", calls[3])
		}
		if calls[6] < 21 {
			t.Errorf("after 7 windows the budget allows %d calls, want a probe above the wall", calls[6])
		}
		if calls[13] < 38 {
			t.Errorf("after 14 windows the budget allows %d calls, want 95%% of 40", calls[13])
		}
		if b.Learned != 40 {
			t.Errorf("learned %v after 16 windows, want capped at N", b.Learned)
		}
		if _, ok := b.grow(r, now.Add(time.Hour)); ok {
			t.Error("a full budget grew")
		}
	})

	t.Run("without an estimate: concave back to the wall", func(t *testing.T) {
		b := fullBudget(r).cut(r, cutAt, -1, cutAt)
		if got := b.curve(40); math.Abs(got-28) > 1e-9 {
			t.Errorf("curve at the cut = %v, want the cut's 28", got)
		}
		b.Active = math.Cbrt(12 / (cubicScale * 40))
		if got := b.curve(40); math.Abs(got-40) > 1e-9 {
			t.Errorf("curve after K windows = %v, want the wall 40", got)
		}
	})

	t.Run("half a window at most twice per window; idle time does not count", func(t *testing.T) {
		b := fullBudget(r).cut(r, cutAt, 20, cutAt)
		if _, ok := b.grow(r, cutAt.Add(r.Per/2-time.Millisecond)); ok {
			t.Error("grew within half a window")
		}
		b, ok := b.grow(r, cutAt.Add(time.Hour))
		if !ok || b.Active != 1 {
			t.Errorf("after an idle hour the growth clock is at %v windows, want 1", b.Active)
		}
	})
}

// TestBudgetWithin: a budget learned under another configured rate keeps
// its calls per second.
func TestBudgetWithin(t *testing.T) {
	old := Rate{N: 40, Per: 2 * time.Second}
	b := fullBudget(old).cut(old, time.Now(), 5, time.Now())
	b.Learned = 5 // 2.5 calls per second
	if got := b.within(Rate{N: 100, Per: 20 * time.Second}); got.Learned != 50 || got.Rate != "100/20s" {
		t.Errorf("within 100/20s: learned %v (%s), want 50", got.Learned, got.Rate)
	}
	if got := b.within(Rate{N: 20, Per: 20 * time.Second}); got.Learned != 20 {
		t.Errorf("within 20/20s: learned %v, want capped at 20", got.Learned)
	}
	if got := b.within(old); got.Learned != 5 {
		t.Errorf("within its own rate: learned %v, want 5", got.Learned)
	}
}

// TestPace is the GCRA: a burst, then one permit per interval, and a
// batch waits until it fits whole.
func TestPace(t *testing.T) {
	p := newPace(20, 5, 2*time.Second) // 100 ms per permit, 5 at once
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	n, tat, _ := p.allow(time.Time{}, now, 10, 5)
	if n != 5 || !tat.Equal(now.Add(500*time.Millisecond)) {
		t.Fatalf("idle: %d permits, tat %s; want the burst of 5, tat 500ms on", n, tat.Sub(now))
	}
	n, _, retryAt := p.allow(tat, now, 10, 5)
	if n != 0 || !retryAt.Equal(now.Add(500*time.Millisecond)) {
		t.Errorf("spent: %d permits, retry %s; want none until 500ms on", n, retryAt.Sub(now))
	}
	if n, _, _ := p.allow(tat, now.Add(110*time.Millisecond), 1, 1); n != 1 {
		t.Errorf("one interval later: %d permits, want 1", n)
	}
	if n, _, _ := p.allow(tat, now.Add(500*time.Millisecond), 10, 5); n != 5 {
		t.Errorf("the burst's time later: %d permits, want 5", n)
	}
}

// A 429 of the cut's episode to a call let go before the one the cut
// estimated from counts fewer accepted calls: the rate follows it down,
// never further than deepestCut, and later or unknown estimates change
// nothing.
func TestBudgetRefine(t *testing.T) {
	r := Rate{N: 40, Per: 2 * time.Second}
	now := time.Now()
	cut := fullBudget(r).cut(r, now, 22, now.Add(2*time.Second))
	cut.CutFrom = now.Add(-100 * time.Millisecond)
	for _, tc := range []struct {
		name     string
		started  time.Duration // before the cut's call
		estimate int
		want     float64
		changed  bool
	}{
		{"an earlier call, fewer accepted", -50 * time.Millisecond, 20, 20, true},
		{"an earlier call, a deep estimate", -50 * time.Millisecond, 3, 11, true},
		{"an earlier call, no estimate", -50 * time.Millisecond, -1, 22, false},
		{"an earlier call, more accepted", -50 * time.Millisecond, 25, 22, false},
		{"a later call", 50 * time.Millisecond, 20, 22, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, changed := cut.refine(cut.CutFrom.Add(tc.started), tc.estimate)
			if changed != tc.changed || got.Learned != tc.want {
				t.Errorf("refine = %v, %t; want %v, %t", got.Learned, changed, tc.want, tc.changed)
			}
			if changed && (got.Wall != tc.want || got.Cuts != cut.Cuts || !got.EpisodeUntil.Equal(cut.EpisodeUntil)) {
				t.Errorf("refine = %+v; want the wall at the new rate, the same episode", got)
			}
		})
	}
}
