package ratelimit

import (
	"encoding/json"
	"sync"
	"testing"
	"time"
)

// TestThrottledCutsOncePerEpisode has three Limiters report 429s of one
// episode at once and checks that the fleet's budget was cut once, to
// what Graph accepted, that every Limiter (and one that starts later)
// uses it, and that a 429 after the episode's pause cuts again.
func TestThrottledCutsOncePerEpisode(t *testing.T) {
	rate := Rate{N: 20, Per: time.Second}
	var mu sync.Mutex
	seen := map[string]float64{}
	// Paced one permit at a time (Burst 1), as a worker's calls come, so
	// that the log tells the calls before the throttled one from it.
	cfg := Config{App: testApp, Rate: rate, Burst: 1, OnBudget: func(tenant string, learned float64) {
		mu.Lock()
		seen[tenant] = learned
		mu.Unlock()
	}}
	f := newFleet(t, 3, cfg)
	ctx := t.Context()
	// Graph accepted 12 calls; the 13th was throttled.
	for range 13 {
		if _, err := f.limiters[0].Wait(ctx, tenantA); err != nil {
			t.Fatal(err)
		}
	}
	started := time.Now()
	pauseEnd := started.Add(300 * time.Millisecond)
	var wg sync.WaitGroup
	for _, l := range f.limiters {
		for range 3 {
			wg.Go(func() {
				th := Throttle{Started: started, RetryAfter: time.Second, HasRetryAfter: true, Until: pauseEnd}
				if err := l.Throttled(ctx, tenantA, th); err != nil {
					t.Errorf("Throttled: %v", err)
				}
			})
		}
	}
	wg.Wait()
	stored := func() budget {
		t.Helper()
		e, err := f.kv.Get(ctx, budgetKey(testApp, tenantA))
		if err != nil {
			t.Fatalf("get budget: %v", err)
		}
		var b budget
		if err := json.Unmarshal(e.Value(), &b); err != nil {
			t.Fatal(err)
		}
		return b
	}
	b := stored()
	if b.Cuts != 1 || b.Learned != 12 || b.Estimate != 12 {
		t.Fatalf("budget after one episode of 9 reports = %d cuts, learned %v, estimate %d; want 1 cut to the 12 Graph accepted", b.Cuts, b.Learned, b.Estimate)
	}
	late := f.open(t, 3, cfg)
	if got := late.LearnedRate(tenantA); got != 12 {
		t.Errorf("a Limiter starting after the cut learned %v, want 12 from the bucket", got)
	}
	for _, l := range f.limiters {
		eventually(t, 2*time.Second, "every limiter to see the cut", func() bool { return l.LearnedRate(tenantA) == 12 })
	}
	mu.Lock()
	if seen[tenantA] != 12 {
		t.Errorf("OnBudget last said %v for the tenant, want 12", seen[tenantA])
	}
	mu.Unlock()

	// The window now holds the fleet to 12 calls.
	<-time.After(time.Until(pauseEnd.Add(rate.Per + 100*time.Millisecond)))
	res := runLoad(append(f.limiters, late), tenantA, 4, 2*rate.Per)
	for _, err := range res.errs {
		t.Errorf("Wait: %v", err)
	}
	if busiest := maxInWindow(res.starts, rate.Per); busiest > 12 || busiest < 9 {
		t.Errorf("%d calls in the busiest window under a learned 12, want at most 12 (and nearly that)", busiest)
	}

	// A 429 to a call let go after the pause is a new episode.
	th := Throttle{Started: time.Now(), Until: time.Now().Add(100 * time.Millisecond)}
	if err := f.limiters[1].Throttled(ctx, tenantA, th); err != nil {
		t.Fatal(err)
	}
	if b := stored(); b.Cuts != 2 || b.Learned >= 12 {
		t.Errorf("after a second episode: %d cuts, learned %v; want 2 cuts, below 12", b.Cuts, b.Learned)
	}
}

// TestPacedBurst checks that a Limiter with a Burst below N starts that
// many calls at once and paces the rest of the window.
func TestPacedBurst(t *testing.T) {
	rate := Rate{N: 20, Per: time.Second}
	f := newFleet(t, 2, Config{App: testApp, Rate: rate, Burst: 5})
	res := runLoad(f.limiters, tenantA, 12, rate.Per)
	for _, err := range res.errs {
		t.Errorf("Wait: %v", err)
	}
	first := countIn(res.starts, res.start, res.start.Add(20*time.Millisecond))
	half := countIn(res.starts, res.start, res.start.Add(rate.Per/4))
	t.Logf("%d calls in the first 20ms, %d in the first %s, %d in the window", first, half, rate.Per/4, len(res.starts))
	if first > 5 {
		t.Errorf("%d calls started at once, want the burst of 5", first)
	}
	// 5, then one every 50 ms: 10 by 250 ms.
	if half < 8 || half > 11 {
		t.Errorf("%d calls in the first quarter window, want about 10", half)
	}
	if len(res.starts) < 19 || maxInWindow(res.starts, rate.Per) > rate.N {
		t.Errorf("%d calls in the window (busiest %d), want nearly all 20 and never more", len(res.starts), maxInWindow(res.starts, rate.Per))
	}
}
