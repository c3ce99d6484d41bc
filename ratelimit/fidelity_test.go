package ratelimit

import (
	"fmt"
	"slices"
	"testing"
	"time"
)

// TestFidelity runs fleets of Limiters on separate connections against one
// tenant, first an idle fleet asked for exactly N calls at once, then with
// more demand than the rate allows, and checks the burst (an idle fleet
// takes all N at once), the bound (no window holds more than N starts) and
// a loose sanity bound on the throughput.
//
// "At once" is judged by the mechanism, not by wall time: the N permits
// of an idle fleet must come without any Limiter holding its waiters for
// the window or the pacing (Stats.Held), so that only KV round trips stand
// between them. With ten Limiters racing one key those round trips are
// serialised, and on a loaded host the twentieth permit came after 250 ms
// although nothing held it. A permit whose grant arrived after its
// validity (an overloaded machine) is discarded, never used late, and
// still counts in the window; the waiter it was for is then rightly held,
// so the burst is only judged when nothing was discarded.
func TestFidelity(t *testing.T) {
	rate := Rate{N: 20, Per: time.Second}
	const windows = 3
	for _, clients := range []int{3, 10} {
		t.Run(fmt.Sprintf("%d limiters", clients), func(t *testing.T) {
			f := newFleet(t, clients, Config{App: testApp, Rate: rate})
			burst := takeAll(f.limiters, tenantA, rate.N)
			for _, err := range burst.errs {
				t.Fatalf("Wait: %v", err)
			}
			idle := sumStats(f.limiters)
			res := runLoad(f.limiters, tenantA, max(2, 24/clients), windows*rate.Per+rate.Per/5)
			for _, err := range res.errs {
				t.Errorf("Wait: %v", err)
			}
			starts := append(slices.Clone(burst.starts), res.starts...)
			first := starts[0]
			busiest := maxInWindow(starts, rate.Per)
			achieved := countIn(starts, first, first.Add(windows*rate.Per))
			share := float64(achieved) / float64(windows*rate.N)
			st := sumStats(f.limiters)
			t.Logf("idle fleet: %d calls in %s, %d held, %d discarded, %.2f conflicts per call; loaded: busiest window %d/%d, %d calls in %d windows (%.0f%%), steady %.0f%%, %.2f KV ops and %.2f conflicts per call, %d permits discarded",
				len(burst.starts), burst.starts[len(burst.starts)-1].Sub(burst.start).Round(time.Millisecond), idle.Held, idle.Discarded,
				float64(idle.Conflicts)/float64(idle.Waits),
				busiest, rate.N, achieved, windows, 100*share,
				100*steadyShare(starts, rate.N, rate.Per),
				float64(st.KVOps)/float64(st.Waits), float64(st.Conflicts)/float64(st.Waits), st.Discarded)
			if idle.Held > 0 && idle.Discarded == 0 {
				t.Errorf("an idle fleet asked for %d calls held its waiters %d times, want all %d at once", rate.N, idle.Held, rate.N)
			}
			if busiest > rate.N {
				t.Errorf("%d calls started within one %s window, want at most %d", busiest, rate.Per, rate.N)
			}
			// The throughput target (95% of 20/1s) is measured by `go run
			// ./bench --rows rate`. Here the bound is loose: a loaded KV
			// lengthens validity and stamps by up to a tenth of the window
			// each, which costs throughput by design, while a Limiter that
			// lost a window's permits would start at most two thirds.
			if share < 0.75 {
				t.Errorf("%d calls in %d windows is %.0f%% of the %d allowed, want at least 75%%", achieved, windows, 100*share, windows*rate.N)
			}
		})
	}
}
