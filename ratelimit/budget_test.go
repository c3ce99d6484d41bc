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

// windowsUntil grows b by a grant every half window of r until its
// budget allows calls, and returns the windows of use that took (-1: not
// within limit windows) and the budget then. It fails the test if the
// learned rate ever leaves [minLearned, N].
func windowsUntil(t *testing.T, r Rate, b budget, calls int, limit float64) (float64, budget) {
	t.Helper()
	now := b.GrownAt
	for w := 0.0; w <= limit; w += 0.5 {
		if b.calls(r) >= calls {
			return w, b
		}
		now = now.Add(r.Per / 2)
		b, _ = b.grow(r, now)
		if b.Learned > float64(r.N) || b.Learned < minLearned {
			t.Fatalf("learned %v after %v windows, want within [%v, %d]", b.Learned, w, minLearned, r.N)
		}
	}
	return -1, b
}

// TestBudgetGrowth is the curve, clocked by windows of use: at a wall
// Graph confirmed, a single call over it after holdWindows and a half;
// a grown budget found within a few windows more; never above N.
func TestBudgetGrowth(t *testing.T) {
	cutAt := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

	t.Run("at a confirmed wall: hold, then probe by one call", func(t *testing.T) {
		for _, r := range []Rate{{N: 40, Per: 2 * time.Second}, {N: 200, Per: 20 * time.Second}, {N: 5, Per: time.Second}} {
			wall := r.N / 2
			b := fullBudget(r).cut(r, cutAt, wall, cutAt)
			for probe := range 3 {
				held, next := windowsUntil(t, r, b, wall+1, 20)
				if held != holdWindows+0.5 {
					t.Errorf("%s, probe %d: one call over the wall of %d after %v windows of use, want %v", r, probe, wall, held, holdWindows+0.5)
				}
				if got := next.calls(r); got != wall+1 {
					t.Errorf("%s, probe %d: the probe allows %d calls, want the wall's %d and one", r, probe, got, wall)
				}
				// Graph says no to the probe, counting the wall's calls.
				b = next.cut(r, next.GrownAt, wall, next.GrownAt)
				if b.calls(r) != wall {
					t.Fatalf("%s: the probe's cut allows %d calls, want the wall's %d", r, b.calls(r), wall)
				}
			}
		}
	})

	t.Run("the budget grew: 95% of N soon after the hold", func(t *testing.T) {
		for _, tc := range []struct {
			r    Rate
			wall int
			most float64 // windows of use from the cut to 95% of N
		}{
			// Issue 16's 30 s at 20/2s is 15 windows. From a cut, the worst
			// case, 13 leaves a window to fill one at Graph and one for
			// growth lagging its half-window steps.
			{Rate{N: 40, Per: 2 * time.Second}, 20, 13},
			{Rate{N: 40, Per: 2 * time.Second}, 38, holdWindows + 1},
			{Rate{N: 200, Per: 20 * time.Second}, 100, holdWindows + 4},
			{Rate{N: 200, Per: 20 * time.Second}, 10, holdWindows + 4},
			{Rate{N: 5, Per: time.Second}, 1, holdWindows + 1.5},
		} {
			b := fullBudget(tc.r).cut(tc.r, cutAt, tc.wall, cutAt)
			b.Learned, b.Wall, b.Start = float64(tc.wall), float64(tc.wall), float64(tc.wall) // not limited by deepestCut
			want := (tc.r.N*95 + 99) / 100
			took, end := windowsUntil(t, tc.r, b, want, 40)
			t.Logf("%s from a wall of %d: %d calls after %v windows of use", tc.r, tc.wall, want, took)
			if took < 0 || took > tc.most {
				t.Errorf("%s from a wall of %d: %d calls after %v windows of use, want at most %v", tc.r, tc.wall, want, took, tc.most)
			}
			if full, _ := windowsUntil(t, tc.r, end, tc.r.N, holdWindows+5); full < 0 {
				t.Errorf("%s: never back to N", tc.r)
			}
		}
	})

	t.Run("reaching N: full again, the wall forgotten", func(t *testing.T) {
		r := Rate{N: 40, Per: 2 * time.Second}
		b := fullBudget(r).cut(r, cutAt, 20, cutAt)
		_, b = windowsUntil(t, r, b, 40, 30)
		if b.Learned != 40 || b.Wall != 40 {
			t.Fatalf("at N: learned %v, wall %v; want both 40", b.Learned, b.Wall)
		}
		if _, ok := b.grow(r, b.GrownAt.Add(time.Hour)); ok {
			t.Error("a full budget grew")
		}
	})

	t.Run("without an estimate: concave back to the wall", func(t *testing.T) {
		r := Rate{N: 40, Per: 2 * time.Second}
		b := fullBudget(r).cut(r, cutAt, -1, cutAt)
		if got := b.curve(40); math.Abs(got-28) > 1e-9 {
			t.Errorf("curve at the cut = %v, want the cut's 28", got)
		}
		b.Active = math.Cbrt(12 / (cubicScale * 40))
		if got := b.curve(40); math.Abs(got-40) > 1e-9 {
			t.Errorf("curve after K windows = %v, want the wall 40", got)
		}
		if took, _ := windowsUntil(t, r, fullBudget(r).cut(r, cutAt, -1, cutAt), 38, 20); took < 0 || took > 8 {
			t.Errorf("from 28 back to 38 of 40 after %v windows, want at most 8", took)
		}
	})

	t.Run("half a window at most twice per window; idle time does not count", func(t *testing.T) {
		r := Rate{N: 40, Per: 2 * time.Second}
		b := fullBudget(r).cut(r, cutAt, 20, cutAt)
		if _, ok := b.grow(r, cutAt.Add(r.Per/2-time.Millisecond)); ok {
			t.Error("grew within half a window")
		}
		b, ok := b.grow(r, cutAt.Add(time.Hour))
		if !ok || b.Active != 1 {
			t.Errorf("after an idle hour the growth clock is at %v windows, want 1", b.Active)
		}
	})

	t.Run("a probe gone idle starts again from the wall", func(t *testing.T) {
		r := Rate{N: 40, Per: 2 * time.Second}
		_, b := windowsUntil(t, r, fullBudget(r).cut(r, cutAt, 20, cutAt), 27, 20)
		short, _ := b.grow(r, b.GrownAt.Add(r.Per))
		if short.Learned <= b.Learned {
			t.Errorf("a window between grants: learned %v from %v, want the probe going on", short.Learned, b.Learned)
		}
		idle, ok := b.grow(r, b.GrownAt.Add(idleWindows*r.Per))
		if !ok || idle.Learned != 20 {
			t.Fatalf("after %d windows idle: learned %v (written %t), want the wall's 20", idleWindows, idle.Learned, ok)
		}
		if again, _ := windowsUntil(t, r, idle, 21, 5); again != 0.5 {
			t.Errorf("after the idle reset, one call over the wall after %v windows, want half a window", again)
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
