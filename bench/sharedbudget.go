package main

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/recoverpasscode/recoverpasscode/graph/graphsim"
	"github.com/recoverpasscode/recoverpasscode/ratelimit"
)

// budgetRun is what the shared-budget run measured: a fleet told more than
// Graph leaves it (another app uses the rest of the tenant's budget), then
// the other app stopping.
type budgetRun struct {
	told, real    ratelimit.Rate
	jobs, workers int
	// calls and throttled count Graph's answers to the batch, throttled
	// those the double's limit answered 429.
	calls, throttled int
	// share is the steady state's throughput over the real budget's, as
	// steadyShare measures it at the real rate.
	share float64
	// span is the time from the first admitted call to the last; perfect
	// is what a client at exactly the real budget needs for the batch,
	// jobs × Per / N.
	span, perfect time.Duration
	// maxInWindow is the most admitted calls Graph saw in any window.
	maxInWindow int
	// recovery is how long after the other app stopped the fleet had made
	// 95% of the told rate in one window; recovered says it did at all
	// within the recovery batch.
	recovery  time.Duration
	recovered bool
	// recoveryJobs is the batch queued when the other app stopped.
	recoveryJobs int
	warnings     int
	warning      string
}

// sharedBudget runs cfg.BudgetJobs jobs through cfg.RateWorkers workers
// told cfg.BudgetTold against a Graph double that leaves them only
// cfg.BudgetReal (429 beyond it) and takes cfg.RateLatency per call, then
// raises the double's limit to the told rate, as when the other app
// stops, with cfg.RecoveryJobs more jobs queued, and times how long the
// fleet takes to make 95% of the told rate in one window.
func (b *bench) sharedBudget(ctx context.Context) (budgetRun, error) {
	cfg := b.cfg
	told, real := cfg.BudgetTold, cfg.BudgetReal
	run := budgetRun{told: told, real: real, jobs: cfg.BudgetJobs, workers: cfg.RateWorkers, recoveryJobs: cfg.RecoveryJobs}
	s, err := startStack(ctx, b.dir, graphsim.Config{Limit: real.N, Window: real.Per, Latency: cfg.RateLatency})
	if err != nil {
		return run, err
	}
	defer s.close()
	if err := s.publishJobs(ctx, 0, run.jobs); err != nil {
		return run, err
	}
	f, err := b.start(ctx, s, b.workerFleet(cfg.RateWorkers, told.String()))
	if err != nil {
		return run, err
	}
	defer f.stop()
	run.perfect = time.Duration(run.jobs) * real.Per / time.Duration(real.N)
	wctx, cancel := context.WithTimeout(ctx, 3*run.perfect+time.Minute)
	defer cancel()
	if _, err := s.awaitResults(wctx, uint64(run.jobs), f.exits); err != nil {
		return run, err
	}
	batch := s.gs.Calls()
	var admitted []time.Time
	for _, c := range batch {
		run.calls++
		switch {
		case c.LimitRejected:
			run.throttled++
		case c.Status == http.StatusNoContent:
			admitted = append(admitted, c.Time)
		}
	}
	slices.SortFunc(admitted, time.Time.Compare)
	if len(admitted) != run.jobs {
		return run, fmt.Errorf("graph admitted %d calls for %d jobs", len(admitted), run.jobs)
	}
	run.span = admitted[len(admitted)-1].Sub(admitted[0])
	run.share = steadyShare(admitted, real)
	run.maxInWindow = s.gs.MaxInWindow(benchTenant, benchClient, real.Per)
	b.logf("  %d calls, %d 429s (%.1f%%); %.1f%% of the real budget; the batch took %s, %.2f× the %s at %s",
		run.calls, run.throttled, 100*float64(run.throttled)/float64(run.calls), 100*run.share,
		run.span.Round(time.Millisecond), run.span.Seconds()/run.perfect.Seconds(), run.perfect, real)

	// The other app stops: Graph leaves the fleet what it was told.
	stopped := time.Now()
	s.gs.SetLimit(told.N)
	if err := s.publishJobs(ctx, run.jobs, run.recoveryJobs); err != nil {
		return run, err
	}
	rctx, rcancel := context.WithTimeout(ctx, time.Duration(run.recoveryJobs)*real.Per/time.Duration(real.N)+time.Minute)
	defer rcancel()
	if _, err := s.awaitResults(rctx, uint64(run.jobs+run.recoveryJobs), f.exits); err != nil {
		return run, err
	}
	f.stop()
	var after []time.Time
	for _, c := range s.gs.Calls()[len(batch):] {
		if c.Status == http.StatusNoContent && !c.Time.Before(stopped) {
			after = append(after, c.Time)
		}
	}
	slices.SortFunc(after, time.Time.Compare)
	want := (told.N*95 + 99) / 100
	for i := 0; i+want-1 < len(after); i++ {
		if after[i+want-1].Sub(after[i]) < told.Per {
			run.recovery, run.recovered = after[i+want-1].Sub(stopped), true
			break
		}
	}
	for _, p := range f.procs {
		n, first := p.problems()
		if run.warnings += n; run.warning == "" {
			run.warning = first
		}
	}
	if err := s.checkClean(ctx, run.jobs+run.recoveryJobs); err != nil {
		return run, err
	}
	b.logf("  the other app stopped: %d calls in one %s (95%% of %s) after %s (found: %t); %d warnings %s",
		want, told.Per, told, run.recovery.Round(time.Millisecond), run.recovered, run.warnings, run.warning)
	return run, nil
}
