package main

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/recoverpasscode/recoverpasscode/graph/graphsim"
	"github.com/recoverpasscode/recoverpasscode/internal/testsystem"
	"github.com/recoverpasscode/recoverpasscode/ratelimit"
	"github.com/recoverpasscode/recoverpasscode/wire"
)

// Three worker processes told 40/2s share a tenant whose real budget left
// for them is 20/2s (another app uses the rest): the fleet learns it from
// the first 429s, so that at most 2% of the calls are 429s and a learned
// rate cut lands near the real 20, not at the 40 told.
//
// The time target (at most 1.1× what a perfect client at the real
// budget needs) is measured by `go run ./bench --rows budget`, with Graph's
// latency: here, on a loaded host, the Limiter widens its stamps by the
// measured KV and clock delays and the fleet gets 86–90% of the budget,
// which put the batch at 1.10× by chance of the scheduler (33.01s of 30s).
// The test keeps a loose bound, 1.5×, that only a broken mechanism
// crosses: a fleet that cut its rate to half the real budget, or that
// paused for most of each window, takes 2×.
func TestFleetLearnsASharedBudget(t *testing.T) {
	// Each of the slow rate tests spends its time waiting out 2 s windows
	// at 20–40 calls per window of its own Graph and NATS, which costs the
	// CPU next to nothing, so they run side by side (the busy 10- and
	// 100-tenant test does not).
	t.Parallel()
	told, real := ratelimit.Rate{N: 40, Per: 2 * time.Second}, ratelimit.Rate{N: 20, Per: 2 * time.Second}
	sys := testsystem.Start(t, graphsim.Config{Limit: real.N, Window: real.Per})
	var children []*testsystem.Buffer
	for i := range 3 {
		cfg := sys.Config(fmt.Sprintf("p%d", i))
		cfg.Rate = told
		cfg.Concurrency = 16
		children = append(children, startChild(t, sys, cfg).logs)
	}
	const n = 300
	for i := range n {
		sys.Submit("batch", wire.Job{ID: fmt.Sprintf("b-%03d", i), ManagedDeviceID: testsystem.DeviceN(i)})
	}
	results := sys.Results("", n, 90*time.Second)
	for id, r := range results {
		if r.Status != wire.Succeeded {
			t.Errorf("%s: %s after %d attempts: %s", id, r.Status, r.Attempts, r.Error)
		}
	}
	s := summarize(sys.GS.Calls())
	perfect := time.Duration(n) * real.Per / time.Duration(real.N)
	t.Logf("%d calls for %d jobs, %d 429s (%.1f%%); the batch took %s, %.2f× the %s a perfect client needs at %s; busiest %s window %d",
		s.calls, n, s.throttled, 100*s.throttledShare(), s.span.Round(time.Millisecond), s.span.Seconds()/perfect.Seconds(), perfect, real,
		real.Per, sys.GS.MaxInWindow(testsystem.Tenant, testsystem.Client, real.Per))
	least := told.N
	for i, logs := range children {
		for _, line := range strings.Split(logs.String(), "\n") {
			if !strings.Contains(line, "learned rate") {
				continue
			}
			t.Logf("p%d: %s", i, line)
			var cut struct {
				Learned float64 `json:"learned"`
				Message string  `json:"message"`
			}
			if json.Unmarshal([]byte(line), &cut) == nil && strings.Contains(cut.Message, "learned rate cut") {
				least = min(least, int(math.Ceil(cut.Learned)))
			}
		}
	}
	if s.throttledShare() > 0.02 {
		dumpTenant(t, sys.GS.Calls(), testsystem.Tenant)
		t.Errorf("%.1f%% of the calls were 429s, want at most 2%%", 100*s.throttledShare())
	}
	// The cut estimates the budget from the calls Graph admitted in the
	// window of the 429: 20, give or take a call answered out of order.
	if least > real.N+real.N/10 {
		t.Errorf("the least learned rate cut was %d, want about the real %d (told %d)", least, real.N, told.N)
	}
	if s.span > perfect*3/2 {
		t.Errorf("the batch took %s, want at most 1.5× %s (the bench measures the 1.1× target)", s.span, perfect)
	}
}

// callSummary is what Graph saw of a run.
type callSummary struct {
	calls, admitted, throttled int
	// span is the time from the first admitted call to the last.
	span time.Duration
	// admittedAt are the arrival times of the admitted calls, in order.
	admittedAt []time.Time
}

func (s callSummary) throttledShare() float64 { return float64(s.throttled) / float64(s.calls) }

func summarize(calls []graphsim.Call) callSummary {
	var s callSummary
	for _, c := range calls {
		s.calls++
		switch {
		case c.LimitRejected:
			s.throttled++
		case c.Status == http.StatusNoContent:
			s.admittedAt = append(s.admittedAt, c.Time)
		}
	}
	slices.SortFunc(s.admittedAt, time.Time.Compare)
	s.admitted = len(s.admittedAt)
	if s.admitted > 1 {
		s.span = s.admittedAt[s.admitted-1].Sub(s.admittedAt[0])
	}
	return s
}

// Many tenants load the machine at once; each tenant's window must still
// hold at Graph, where arrivals are counted: no limit 429s, and at most N
// calls in any window per tenant.
func TestManyTenantsKeepTheirWindows(t *testing.T) {
	for _, tc := range []struct {
		tenants, jobs int
		short         bool
	}{{10, 100, true}, {100, 100, false}} {
		t.Run(fmt.Sprintf("%d tenants", tc.tenants), func(t *testing.T) {
			if !tc.short && testing.Short() {
				t.Skip("long: the bench measures it")
			}
			manyTenants(t, tc.tenants, tc.jobs)
		})
	}
}

func manyTenants(t *testing.T, tenants, jobs int) {
	rate := ratelimit.Rate{N: 20, Per: 2 * time.Second}
	sys := testsystem.Start(t, graphsim.Config{Limit: rate.N, Window: rate.Per})
	ids := make([]string, tenants)
	for i := range ids {
		ids[i] = fmt.Sprintf("33333333-3333-4333-8333-%012d", i)
		sys.GS.AddTenant(ids[i])
	}
	for i := range 3 {
		cfg := sys.Config(fmt.Sprintf("p%d", i))
		cfg.Rate = rate
		cfg.Concurrency = 16
		cfg.Tenants = ids
		startChild(t, sys, cfg)
	}
	for j := range jobs {
		for i, tenant := range ids {
			sys.Submit("batch", wire.Job{ID: fmt.Sprintf("t%03d-%03d", i, j), TenantID: tenant, ManagedDeviceID: testsystem.DeviceN(j)})
		}
	}
	n := tenants * jobs
	// Perfect pacing takes jobs/N windows; the deadline only ends a stuck
	// fleet. Six busy loops on 2 cores once made the 10-tenant run take 50s
	// instead of 11s, which the old deadline (51s) nearly cut off.
	results := sys.Results("", n, time.Duration(jobs/rate.N+60)*rate.Per+time.Duration(n)*time.Millisecond)
	for id, r := range results {
		if r.Status != wire.Succeeded {
			t.Errorf("%s: %s after %d attempts: %s", id, r.Status, r.Attempts, r.Error)
		}
	}
	s := summarize(sys.GS.Calls())
	busiest, busiestTenant := 0, ""
	for _, tenant := range ids {
		if m := sys.GS.MaxInWindow(tenant, testsystem.Client, rate.Per); m > busiest {
			busiest, busiestTenant = m, tenant
		}
	}
	t.Logf("%d tenants × %d jobs at %s by 3 processes: %d calls, %d limit 429s, busiest window %d (tenant %s), all done in %s",
		tenants, jobs, rate, s.calls, s.throttled, busiest, busiestTenant, s.span.Round(time.Millisecond))
	if s.throttled > 0 {
		t.Errorf("graph answered %d limit 429s", s.throttled)
	}
	if busiest > rate.N {
		dumpTenant(t, sys.GS.Calls(), busiestTenant)
		t.Errorf("%d calls in one %s window for tenant %s, limit %d", busiest, rate.Per, busiestTenant, rate.N)
	}
}

// dumpTenant logs the calls of one tenant, to show how a window broke.
func dumpTenant(t *testing.T, calls []graphsim.Call, tenant string) {
	var first time.Time
	for _, c := range calls {
		if c.TenantID != tenant {
			continue
		}
		if first.IsZero() {
			first = c.Time
		}
		t.Logf("%8.3f %d %s", c.Time.Sub(first).Seconds(), c.Status, c.ClientRequestID[:8])
	}
}
