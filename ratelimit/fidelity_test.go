package ratelimit

import (
	"fmt"
	"testing"
	"time"
)

// TestFidelity runs fleets of Limiters on separate connections against one
// tenant with more demand than the rate allows, and checks the bound (no
// window holds more than N starts), the burst (an idle fleet takes all N
// at once) and the throughput (at least 90% of what the rate allows). A
// permit whose grant took longer than its validity to arrive (on an
// overloaded machine) is discarded, never used late, so the burst is
// checked against N less the discarded permits; unloaded, none are.
func TestFidelity(t *testing.T) {
	rate := Rate{N: 20, Per: time.Second}
	const windows = 3
	for _, clients := range []int{3, 10} {
		t.Run(fmt.Sprintf("%d limiters", clients), func(t *testing.T) {
			f := newFleet(t, clients, Config{App: testApp, Rate: rate})
			res := runLoad(f.limiters, tenantA, max(2, 24/clients), windows*rate.Per+rate.Per/5)
			for _, err := range res.errs {
				t.Errorf("Wait: %v", err)
			}
			if len(res.starts) < rate.N {
				t.Fatalf("only %d calls started", len(res.starts))
			}
			first := res.starts[0]
			busiest := maxInWindow(res.starts, rate.Per)
			burst := countIn(res.starts, res.start, res.start.Add(rate.Per/4))
			achieved := countIn(res.starts, first, first.Add(windows*rate.Per))
			share := float64(achieved) / float64(windows*rate.N)
			st := sumStats(f.limiters)
			t.Logf("busiest window %d/%d, %d calls in the first %s, %d calls in %d windows (%.0f%%), steady %.0f%%, %.2f KV ops and %.2f conflicts per call, %d permits discarded",
				busiest, rate.N, burst, rate.Per/4, achieved, windows, 100*share,
				100*steadyShare(res.starts, rate.N, rate.Per),
				float64(st.KVOps)/float64(st.Waits), float64(st.Conflicts)/float64(st.Waits), st.Discarded)
			if busiest > rate.N {
				t.Errorf("%d calls started within one %s window, want at most %d", busiest, rate.Per, rate.N)
			}
			if burst < rate.N-int(st.Discarded) {
				t.Errorf("%d calls started in the first %s, want an idle fleet to start %d at once", burst, rate.Per/4, rate.N-int(st.Discarded))
			}
			if share < 0.9 {
				t.Errorf("%d calls in %d windows is %.0f%% of the %d allowed, want at least 90%%", achieved, windows, 100*share, windows*rate.N)
			}
		})
	}
}
