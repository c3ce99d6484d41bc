package reliability_test

import (
	"math/rand/v2"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/recoverpasscode/recoverpasscode/devserver/devservertest"
	"github.com/recoverpasscode/recoverpasscode/graph/graphsim"
)

// TestGraphStorm runs a batch through two workers while Graph misbehaves
// on a share of the calls. Every storm leaves each job with one result,
// succeeded; an action that may have run twice (a 5xx after the request
// was sent, a hang past the deadline, a reset, a 504 after acting) is
// marked uncertain on its result.
func TestGraphStorm(t *testing.T) {
	t.Parallel()
	storms := []struct {
		name  string
		share float64
		fault func(rng *rand.Rand) graphsim.Fault
	}{
		{"30% 5xx", 0.3, func(rng *rand.Rand) graphsim.Fault {
			statuses := []int{http.StatusInternalServerError, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout}
			return graphsim.Fault{Status: statuses[rng.IntN(len(statuses))]}
		}},
		{"hangs past the attempt deadline", 0.2, func(*rand.Rand) graphsim.Fault {
			return graphsim.Fault{Hang: true}
		}},
		{"connection resets", 0.2, func(*rand.Rand) graphsim.Fault {
			return graphsim.Fault{Reset: true}
		}},
		{"504 after the action ran", 0.2, func(*rand.Rand) graphsim.Fault {
			return graphsim.Fault{Status: http.StatusGatewayTimeout, PerformBeforeFailing: true}
		}},
	}
	for i, storm := range storms {
		t.Run(storm.name, func(t *testing.T) {
			ns := devservertest.Start(t)
			r := newRig(t, graphsim.Config{Latency: 20 * time.Millisecond}, ns.URL(), 1)
			r.gs.SetFaultFunc(faultShare(uint64(i+1), storm.share, storm.fault))
			for _, name := range []string{"storm-a", "storm-b"} {
				r.startWorker(r.config(name))
			}
			jobs, want := batch("storm", 0, 200, 10)
			r.submit(t.Context(), "batch", jobs)
			rep := r.settle(want, 120*time.Second)
			if rep.Uncertain == 0 {
				t.Errorf("no result marked uncertain: the storm did not reach the outcomes it is meant to test")
			}
			faulted := 0
			for _, c := range r.gs.Calls() {
				if c.Injected {
					faulted++
				}
			}
			t.Logf("%d of %d Graph calls faulted", faulted, rep.GraphCalls)
		})
	}
}

// faultShare returns a fault function that answers a share of the calls
// with fault, drawn from a seeded generator so a failure can be replayed.
func faultShare(seed uint64, share float64, fault func(*rand.Rand) graphsim.Fault) func(graphsim.Call) *graphsim.Fault {
	var mu sync.Mutex
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	return func(graphsim.Call) *graphsim.Fault {
		mu.Lock()
		defer mu.Unlock()
		if rng.Float64() >= share {
			return nil
		}
		f := fault(rng)
		return &f
	}
}
