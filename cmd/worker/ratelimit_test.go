package main

import (
	"fmt"
	"testing"
	"time"

	"github.com/recoverpasscode/recoverpasscode/graph/graphsim"
	"github.com/recoverpasscode/recoverpasscode/internal/testsystem"
	"github.com/recoverpasscode/recoverpasscode/ratelimit"
	"github.com/recoverpasscode/recoverpasscode/wire"
)

// Three worker processes share one limit: Graph never sees more than N
// calls in any window, never answers a limit 429, and the fleet keeps to
// the loose throughput bound (see minSteadyShare).
func TestThreeProcessesShareTheRateLimit(t *testing.T) {
	// Each of the slow rate tests spends its time waiting out 2 s windows
	// at 20–40 calls per window of its own Graph and NATS, which costs the
	// CPU next to nothing, so they run side by side (the busy 10- and
	// 100-tenant test does not).
	t.Parallel()
	rate := ratelimit.Rate{N: 20, Per: 2 * time.Second}
	sys := testsystem.Start(t, graphsim.Config{Limit: rate.N, Window: rate.Per})
	for i := range 3 {
		cfg := sys.Config(fmt.Sprintf("p%d", i))
		cfg.Rate = rate
		cfg.Concurrency = 16
		startChild(t, sys, cfg)
	}
	const n = 300
	for i := range n {
		sys.Submit("batch", wire.Job{ID: fmt.Sprintf("r-%03d", i), ManagedDeviceID: testsystem.DeviceN(i)})
	}
	results := sys.Results("", n, 90*time.Second)
	for id, r := range results {
		if r.Status != wire.Succeeded || r.Attempts != 1 {
			t.Errorf("%s: %s after %d attempts: %s", id, r.Status, r.Attempts, r.Error)
		}
	}
	calls := sys.GS.Calls()
	limited := 0
	for _, c := range calls {
		if c.LimitRejected {
			limited++
		}
	}
	busiest := sys.GS.MaxInWindow(testsystem.Tenant, testsystem.Client, rate.Per)
	tightest := span(calls, rate.N)
	achieved := steadyRate(calls, rate)
	t.Logf("%d calls by 3 processes at %s: busiest window %d (tightest: %d+1 calls within %s), limit 429s %d, steady throughput %.1f%% of the allowed",
		len(calls), rate, busiest, rate.N, tightest.Round(time.Millisecond), limited, 100*achieved)
	if busiest > rate.N {
		t.Errorf("%d calls in one %s window, limit %d", busiest, rate.Per, rate.N)
	}
	if limited > 0 {
		t.Errorf("graph answered %d limit 429s", limited)
	}
	if achieved < minSteadyShare {
		t.Errorf("the fleet reached %.1f%% of the allowed throughput, want at least %.0f%%", 100*achieved, 100*minSteadyShare)
	}
}

// One worker with a slow Graph (300 ms) still reaches the limit: jobs in
// flight are not capped by latency. Capped, one call in flight would make
// 3.3 calls a second of the 10 allowed (33%), far below minSteadyShare.
func TestOneWorkerReachesTheLimitWithSlowGraph(t *testing.T) {
	// Each of the slow rate tests spends its time waiting out 2 s windows
	// at 20–40 calls per window of its own Graph and NATS, which costs the
	// CPU next to nothing, so they run side by side (the busy 10- and
	// 100-tenant test does not).
	t.Parallel()
	rate := ratelimit.Rate{N: 20, Per: 2 * time.Second}
	sys := testsystem.Start(t, graphsim.Config{Limit: rate.N, Window: rate.Per, Latency: 300 * time.Millisecond})
	cfg := sys.Config("slow")
	cfg.Rate = rate
	cfg.Concurrency = 0 // the default
	sys.StartWorker(cfg)
	const n = 100
	for i := range n {
		sys.Submit("batch", wire.Job{ID: fmt.Sprintf("s-%03d", i), ManagedDeviceID: testsystem.DeviceN(i)})
	}
	sys.Results("", n, 60*time.Second)
	achieved := steadyRate(sys.GS.Calls(), rate)
	t.Logf("300 ms Graph, one worker: steady throughput %.1f%% of the allowed", 100*achieved)
	if achieved < minSteadyShare {
		t.Errorf("reached %.1f%% of the allowed throughput, want at least %.0f%%", 100*achieved, 100*minSteadyShare)
	}
}

// minSteadyShare is the least steady throughput, as a share of the rate,
// that the rate-limit tests accept. The target (95%) is measured by `go
// run ./bench --rows rate`, not here: on a loaded host the Limiter lengthens
// its permits' validity and stamps with the KV's and the calls' measured
// delays, up to a tenth of the window each, which costs throughput by
// design (2s of 2.44s is 82%), and a steady rate measured over a few
// windows moves with the scheduler. A broken mechanism falls far lower: a
// worker capped by its latency, or a window counted twice (50%).
const minSteadyShare = 0.7

// span is the shortest time in which n+1 consecutive calls arrived.
func span(calls []graphsim.Call, n int) time.Duration {
	best := time.Duration(1<<63 - 1)
	for i := 0; i+n < len(calls); i++ {
		best = min(best, calls[i+n].Time.Sub(calls[i].Time))
	}
	return best
}

// steadyRate is the call rate after the first window, as a fraction of the
// rate allowed. The first window measures start-up (processes connecting,
// first tokens), not the limiter: from then on every call waits for a slot
// freed exactly one window earlier.
func steadyRate(calls []graphsim.Call, rate ratelimit.Rate) float64 {
	first := calls[rate.N].Time
	last := calls[len(calls)-1].Time
	perSecond := float64(len(calls)-1-rate.N) / last.Sub(first).Seconds()
	return perSecond / (float64(rate.N) / rate.Per.Seconds())
}
