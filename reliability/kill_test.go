package reliability_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/recoverpasscode/recoverpasscode/devserver/devservertest"
	"github.com/recoverpasscode/recoverpasscode/graph/graphsim"
)

// latency of Graph in TestWorkerKilled: long enough that a kill often
// lands between Graph acting and the record saying so, the crash window.
const killLatency = 150 * time.Millisecond

// TestWorkerKilled SIGKILLs worker processes at random points of a batch
// and starts replacements, as an orchestrator does. Each seed picks three
// kill points (by Graph call count, plus an offset within a call's
// latency) and the victims. Every job still ends with one result; where a
// worker died after Graph acted and before the record said so, the action
// ran twice and the result says so.
func TestWorkerKilled(t *testing.T) {
	t.Parallel()
	for _, seed := range []uint64{1, 2, 3} {
		t.Run(fmt.Sprintf("seed %d", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 0x6b696c6c))
			ns := devservertest.Start(t)
			r := newRig(t, graphsim.Config{Latency: killLatency}, ns.URL(), 1)
			spawned := 0
			spawn := func() *proc {
				cfg := r.config(fmt.Sprintf("kill%d-w%d", seed, spawned))
				cfg.Concurrency = 4
				spawned++
				return r.startProcess(cfg, "")
			}
			procs := []*proc{spawn(), spawn()}

			const n = 240
			jobs, want := batch(fmt.Sprintf("kill%d", seed), 0, n, 10)
			r.submit(t.Context(), "batch", jobs)
			points := []int{20 + rng.IntN(n/4), 20 + rng.IntN(n/2), 20 + rng.IntN(3*n/4)}
			slices.Sort(points)
			for _, at := range points {
				r.waitCalls(t.Context(), at)
				<-time.After(time.Duration(rng.Int64N(int64(killLatency))))
				v := rng.IntN(len(procs))
				procs[v].kill()
				t.Logf("killed %s after %d Graph calls", procs[v].name, len(r.gs.Calls()))
				procs[v] = spawn()
			}
			r.settle(want, 120*time.Second)
		})
	}
}
