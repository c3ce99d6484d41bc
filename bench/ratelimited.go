package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/recoverpasscode/recoverpasscode/graph/graphsim"
	"github.com/recoverpasscode/recoverpasscode/ratelimit"
)

// rateRun is what one rate-limited run measured.
type rateRun struct {
	rate    ratelimit.Rate
	jobs    int
	workers int
	// share is achieved ÷ allowed throughput in the steady state, as Graph
	// saw the calls: Per over the mean time from each call to the call N
	// places later, which a perfect limiter makes exactly Per.
	share float64
	// span is the time from the first admitted call to the last; least is
	// the least a perfect limiter needs for as many calls.
	span, least time.Duration
	// throttled counts the 429s the double's limit answered.
	throttled int
	// maxInWindow is the most calls Graph saw in any window of Rate.Per.
	maxInWindow int
	// warnings counts the warnings and errors the workers logged; warning
	// is the first.
	warnings int
	warning  string
}

// rateLimited runs the batch of cfg.rateJobs(r) jobs through
// cfg.RateWorkers workers sharing the limit r, against a Graph double that
// enforces r itself (returning 429 for any call over it) and takes
// cfg.RateLatency per call.
//
// Achieved ÷ allowed is measured where Intune counts: the calls' arrival
// at Graph. Within any window of Per at most N calls may arrive, so a call
// can arrive no sooner than Per after the call N places before it; the
// share is Per over the mean of that interval across the batch, the
// steady state without the shape of the first burst (which the fleet's
// concurrency, not the limiter, decides). The batch as a whole needs at
// least floor((k-1)/N)·Per from its first call to its last, for k calls;
// the row shows that beside the time it took.
func (b *bench) rateLimited(ctx context.Context, r ratelimit.Rate) (rateRun, error) {
	cfg := b.cfg
	run := rateRun{rate: r, jobs: cfg.rateJobs(r), workers: cfg.RateWorkers}
	s, err := startStack(ctx, b.dir, graphsim.Config{Limit: r.N, Window: r.Per, Latency: cfg.RateLatency})
	if err != nil {
		return run, err
	}
	defer s.close()
	if err := s.publishJobs(ctx, 0, run.jobs); err != nil {
		return run, err
	}
	f, err := b.start(ctx, s, b.workerFleet(cfg.RateWorkers, r.String()))
	if err != nil {
		return run, err
	}
	defer f.stop()
	least := time.Duration((run.jobs-1)/r.N) * r.Per
	wctx, cancel := context.WithTimeout(ctx, 2*least+2*time.Minute)
	defer cancel()
	if _, err := s.awaitResults(wctx, uint64(run.jobs), f.exits); err != nil {
		return run, err
	}
	f.stop()
	for _, p := range f.procs {
		n, first := p.problems()
		if run.warnings += n; run.warning == "" {
			run.warning = first
		}
	}
	var admitted []time.Time
	for _, c := range s.gs.Calls() {
		switch {
		case c.LimitRejected:
			run.throttled++
		case c.Status == http.StatusNoContent:
			admitted = append(admitted, c.Time)
		}
	}
	if len(admitted) != run.jobs {
		return run, fmt.Errorf("graph admitted %d calls for %d jobs", len(admitted), run.jobs)
	}
	slices.SortFunc(admitted, time.Time.Compare)
	run.span = admitted[len(admitted)-1].Sub(admitted[0])
	run.least = time.Duration((len(admitted)-1)/r.N) * r.Per
	if run.share = steadyShare(admitted, r); run.share == 0 {
		return run, errors.New("the batch is too small to measure a rate: it needs more than N calls")
	}
	run.maxInWindow = s.gs.MaxInWindow(benchTenant, benchClient, r.Per)
	if err := s.checkClean(ctx, run.jobs); err != nil {
		return run, err
	}
	b.logf("  %.1f%% of allowed; the batch took %s (at best %s), %d 429s, at most %d calls in any %s, %d warnings %s",
		100*run.share, run.span.Round(time.Millisecond), run.least, run.throttled, run.maxInWindow, r.Per, run.warnings, run.warning)
	return run, nil
}

// steadyShare is Per over the mean time from each call to the call N
// places later, for calls sorted by arrival; 0 when there are no such
// pairs.
func steadyShare(arrivals []time.Time, r ratelimit.Rate) float64 {
	pairs := len(arrivals) - r.N
	if pairs <= 0 {
		return 0
	}
	var sum time.Duration
	for k := range pairs {
		sum += arrivals[k+r.N].Sub(arrivals[k])
	}
	mean := sum / time.Duration(pairs)
	if mean <= 0 {
		return 0
	}
	return r.Per.Seconds() / mean.Seconds()
}
