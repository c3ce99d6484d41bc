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
// Graph leaves it (another app uses the rest of the tenant's budget),
// cold and then restarted (its budget from the bucket), then the other
// app stopping.
type budgetRun struct {
	told, real    ratelimit.Rate
	jobs, workers int
	// cold is the first batch, of a fleet that knows nothing; warm the
	// same batch again by a fleet started anew on the same bucket.
	cold, warm batchRun
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

// batchRun is what Graph saw of one batch at the real budget.
type batchRun struct {
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
}

func (r batchRun) throttledShare() float64 { return float64(r.throttled) / float64(r.calls) }
func (r batchRun) ratio() float64          { return r.span.Seconds() / r.perfect.Seconds() }

// sharedBudget runs cfg.BudgetJobs jobs through cfg.RateWorkers workers
// told cfg.BudgetTold against a Graph double that leaves them only
// cfg.BudgetReal (429 beyond it) and takes cfg.RateLatency per call; runs
// as many again through a new fleet on the same bucket, which starts from
// what the first learned; then raises the double's limit to the told rate,
// as when the other app stops, with cfg.RecoveryJobs more jobs queued, and
// times how long the fleet takes to make 95% of the told rate in one
// window.
func (b *bench) sharedBudget(ctx context.Context) (budgetRun, error) {
	cfg := b.cfg
	told, real := cfg.BudgetTold, cfg.BudgetReal
	run := budgetRun{told: told, real: real, jobs: cfg.BudgetJobs, workers: cfg.RateWorkers, recoveryJobs: cfg.RecoveryJobs}
	s, err := startStack(ctx, b.dir, graphsim.Config{Limit: real.N, Window: real.Per, Latency: cfg.RateLatency})
	if err != nil {
		return run, err
	}
	defer s.close()
	var problems []*fleet
	defer func() {
		for _, f := range problems {
			for _, p := range f.procs {
				n, first := p.problems()
				if run.warnings += n; run.warning == "" {
					run.warning = first
				}
			}
		}
	}()
	batch := func(name string, from int) (batchRun, *fleet, error) {
		f, err := b.start(ctx, s, b.workerFleet(cfg.RateWorkers, told.String()))
		if err != nil {
			return batchRun{}, nil, err
		}
		problems = append(problems, f)
		seen := len(s.gs.Calls())
		if err := s.publishJobs(ctx, from, run.jobs); err != nil {
			return batchRun{}, f, err
		}
		r, err := b.budgetBatch(ctx, s, f, seen, from+run.jobs)
		if err == nil {
			b.logf("  %s: %d calls, %d 429s (%.1f%%); %.1f%% of the real budget; the batch took %s, %.2f× the %s at %s",
				name, r.calls, r.throttled, 100*r.throttledShare(), 100*r.share, r.span.Round(time.Millisecond), r.ratio(), r.perfect, real)
		}
		return r, f, err
	}
	var f *fleet
	if run.cold, f, err = batch("cold", 0); err != nil {
		return run, err
	}
	f.stop()
	if run.warm, f, err = batch("restarted", run.jobs); err != nil {
		return run, err
	}
	defer f.stop()

	// The other app stops: Graph leaves the fleet what it was told.
	seen := len(s.gs.Calls())
	stopped := time.Now()
	s.gs.SetLimit(told.N)
	total := 2*run.jobs + run.recoveryJobs
	if err := s.publishJobs(ctx, 2*run.jobs, run.recoveryJobs); err != nil {
		return run, err
	}
	rctx, rcancel := context.WithTimeout(ctx, time.Duration(run.recoveryJobs)*real.Per/time.Duration(real.N)+time.Minute)
	defer rcancel()
	if _, err := s.awaitResults(rctx, uint64(total), f.exits); err != nil {
		return run, err
	}
	f.stop()
	var after []time.Time
	for _, c := range s.gs.Calls()[seen:] {
		if c.Status == http.StatusNoContent {
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
	if err := s.checkClean(ctx, total); err != nil {
		return run, err
	}
	b.logf("  the other app stopped: %d calls in one %s (95%% of %s) after %s (found: %t)",
		want, told.Per, told, run.recovery.Round(time.Millisecond), run.recovered)
	return run, nil
}

// budgetBatch waits for the results of the jobs up to upTo and sums up
// Graph's calls from the seen-th on.
func (b *bench) budgetBatch(ctx context.Context, s *stack, f *fleet, seen, upTo int) (batchRun, error) {
	real := b.cfg.BudgetReal
	r := batchRun{perfect: time.Duration(b.cfg.BudgetJobs) * real.Per / time.Duration(real.N)}
	wctx, cancel := context.WithTimeout(ctx, 3*r.perfect+time.Minute)
	defer cancel()
	if _, err := s.awaitResults(wctx, uint64(upTo), f.exits); err != nil {
		return r, err
	}
	var admitted []time.Time
	for _, c := range s.gs.Calls()[seen:] {
		r.calls++
		switch {
		case c.LimitRejected:
			r.throttled++
		case c.Status == http.StatusNoContent:
			admitted = append(admitted, c.Time)
		}
	}
	slices.SortFunc(admitted, time.Time.Compare)
	if len(admitted) != b.cfg.BudgetJobs {
		return r, fmt.Errorf("graph admitted %d calls for %d jobs", len(admitted), b.cfg.BudgetJobs)
	}
	r.span = admitted[len(admitted)-1].Sub(admitted[0])
	r.share = steadyShare(admitted, real)
	r.maxInWindow = maxIn(admitted, real.Per)
	return r, nil
}

// maxIn is the most of the sorted times inside any window [t, t+per).
func maxIn(times []time.Time, per time.Duration) int {
	best, j := 0, 0
	for i := range times {
		for j < len(times) && times[j].Before(times[i].Add(per)) {
			j++
		}
		best = max(best, j-i)
	}
	return best
}
