package ratelimit

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// BenchmarkFidelity runs fleets of 1, 3 and 10 Limiters, each on its own
// NATS connection, with more demand than the rate allows, for four windows
// per iteration, and reports:
//
//   - fidelity: the most calls started in any window ÷ N (at most 1);
//   - throughput: calls started in the four windows from the first ÷ 4N;
//   - steady: the steady-state rate ÷ N per window, from the time between
//     each call and the call N places later (a perfect sliding window
//     makes that exactly one window);
//   - kvops/permit and conflicts/permit: bucket calls, and writes lost to
//     another writer, per call started.
//
// At 50/500ms an update grants one or two permits (the default Batch is
// N/20); at 200/1s up to ten, as at production's 200/20s.
func BenchmarkFidelity(b *testing.B) {
	for _, rate := range []Rate{{N: 50, Per: 500 * time.Millisecond}, {N: 200, Per: time.Second}} {
		for _, clients := range []int{1, 3, 10} {
			name := fmt.Sprintf("rate=%s/limiters=%d", strings.ReplaceAll(rate.String(), "/", "per"), clients)
			b.Run(name, func(b *testing.B) { benchmarkFidelity(b, rate, clients) })
		}
	}
}

// benchmarkFidelity is one case of BenchmarkFidelity.
func benchmarkFidelity(b *testing.B, rate Rate, clients int) {
	const windows = 4
	f := newFleet(b, clients, Config{App: testApp, Rate: rate})
	var fidelity, throughput, steady, ops, conflicts float64
	runs := 0
	for b.Loop() {
		tenant := fmt.Sprintf("bench-%d", runs)
		before := sumStats(f.limiters)
		res := runLoad(f.limiters, tenant, max(2, 2*rate.N/clients), windows*rate.Per+rate.Per/5)
		after := sumStats(f.limiters)
		for _, err := range res.errs {
			b.Fatalf("Wait: %v", err)
		}
		if len(res.starts) == 0 {
			b.Fatal("no call started")
		}
		first := res.starts[0]
		calls := float64(after.Waits - before.Waits)
		fidelity += float64(maxInWindow(res.starts, rate.Per)) / float64(rate.N)
		throughput += float64(countIn(res.starts, first, first.Add(windows*rate.Per))) / float64(windows*rate.N)
		steady += steadyShare(res.starts, rate.N, rate.Per)
		ops += float64(after.KVOps-before.KVOps) / calls
		conflicts += float64(after.Conflicts-before.Conflicts) / calls
		runs++
	}
	n := float64(runs)
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(fidelity/n, "fidelity")
	b.ReportMetric(throughput/n, "throughput")
	b.ReportMetric(steady/n, "steady")
	b.ReportMetric(ops/n, "kvops/permit")
	b.ReportMetric(conflicts/n, "conflicts/permit")
}
