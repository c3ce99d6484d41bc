package reliability_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/recoverpasscode/recoverpasscode/devserver/devservertest"
	"github.com/recoverpasscode/recoverpasscode/graph/graphsim"
	"github.com/recoverpasscode/recoverpasscode/ratelimit"
)

// skews are the workers' clock errors in TestClockSkew.
var skews = []time.Duration{2 * time.Second, -2 * time.Second, 0}

// TestClockSkew runs a rate-limited batch through three workers whose
// clocks are 2 s ahead, 2 s behind and right (each worker's limiter and
// idempotency leases are given that clock; Graph and NATS keep the real
// one). Every time the fleet shares is kept on the NATS server's clock, so
// the fleet-wide bound holds where Graph counts (no window over the limit,
// no 429 from it), and no lease is taken over early: the jobs that wait
// for a key held by another worker (every tenth re-uses a key) get it only
// when its holder completes it, so no record was ever taken over and no
// result is uncertain.
func TestClockSkew(t *testing.T) {
	// Not parallel: it measures where Graph counts, and other tests' load on
	// the CPUs would delay calls past the limiter's margin (40 ms here).
	rate := ratelimit.Rate{N: 20, Per: 2 * time.Second}
	ns := devservertest.Start(t)
	r := newRig(t, graphsim.Config{Limit: rate.N, Window: rate.Per, Latency: 100 * time.Millisecond}, ns.URL(), 1)
	for i, skew := range skews {
		cfg := r.config("skew-" + []string{"fast", "slow", "right"}[i])
		cfg.Rate = rate
		cfg.Clock = func() time.Time { return time.Now().Add(skew) }
		r.startWorker(cfg)
	}
	// A first burst opens every worker's connections to Graph: the TLS
	// handshakes delay those calls past their permits by more than the
	// limiter's margin, which is not what this test is about. Then the
	// window empties.
	warm, warmWant := batch("warm", 0, 30, 0)
	r.submit(t.Context(), "batch", warm)
	r.settle(warmWant, time.Minute)
	before := r.gs.Calls()
	<-time.After(time.Until(before[len(before)-1].Time.Add(rate.Per)))

	jobs, want := batch("skew", 1000, 160, 10)
	r.submit(t.Context(), "batch", jobs)
	rep := r.settle(append(warmWant, want...), 2*time.Minute)
	calls := r.gs.Calls()[len(before):]
	limited := 0
	var starts []time.Time
	for _, c := range calls {
		starts = append(starts, c.Time)
		if c.LimitRejected {
			limited++
		}
	}
	busiest := maxInWindow(starts, rate.Per)
	t.Logf("%d Graph calls after the warm-up, busiest %s window %d/%d, %d answered 429 by the limit, %d uncertain results",
		len(calls), rate.Per, busiest, rate.N, limited, rep.Uncertain)
	if busiest > rate.N {
		t.Errorf("%d calls reached Graph within one %s window, want at most %d", busiest, rate.Per, rate.N)
	}
	if limited > 0 {
		t.Errorf("Graph answered %d calls 429 for the limit, want none", limited)
	}
	if taken := r.takeovers(); len(taken) > 0 || rep.Uncertain > 0 {
		t.Errorf("leases taken over early (%d uncertain results): %s", rep.Uncertain, strings.Join(taken, "; "))
	}
}

// takeovers lists the idempotency records that were ever taken over from
// an owner, as their records count it.
func (r *rig) takeovers() []string {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(r.t.Context(), 30*time.Second)
	defer cancel()
	kv, err := r.js.KeyValue(ctx, r.names.KeysBucket())
	if err != nil {
		r.t.Fatal(err)
	}
	keys, err := kv.ListKeys(ctx)
	if err != nil {
		r.t.Fatal(err)
	}
	var taken []string
	for key := range keys.Keys() {
		entry, err := kv.Get(ctx, key)
		if err != nil {
			r.t.Fatalf("idempotency record %s: %v", key, err)
		}
		var rec struct {
			Key       string `json:"key"`
			Owner     string `json:"owner"`
			Takeovers int    `json:"takeovers"`
		}
		if err := json.Unmarshal(entry.Value(), &rec); err != nil {
			r.t.Fatalf("idempotency record %s: %v", key, err)
		}
		if rec.Takeovers > 0 {
			taken = append(taken, fmt.Sprintf("%s taken over %d times, last by %s", rec.Key, rec.Takeovers, rec.Owner))
		}
	}
	return taken
}

// maxInWindow is the most calls in any half-open window of length per,
// as Graph counts them; times are in order.
func maxInWindow(times []time.Time, per time.Duration) int {
	best, j := 0, 0
	for i := range times {
		for j < len(times) && times[j].Sub(times[i]) < per {
			j++
		}
		best = max(best, j-i)
	}
	return best
}
