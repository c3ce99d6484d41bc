package main

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
)

// durabilityRun is one fsync comparison: the same worker fleet and batch on
// the same kind of NATS, once with the server's default sync_interval and
// once with "always", in every round.
type durabilityRun struct {
	where string // "1 node" or "3-node cluster (R3)"
	// byDefault and always are the jobs/s of each round, in the order the
	// rounds ran.
	byDefault, always []float64
}

// share is the median round's throughput with "always" over the default's.
func (d durabilityRun) share() float64 {
	if len(d.byDefault) == 0 {
		return 0
	}
	return d.ratio(d.median())
}

// ratio is round i's throughput with "always" over the default's.
func (d durabilityRun) ratio(i int) float64 {
	if d.byDefault[i] == 0 {
		return 0
	}
	return d.always[i] / d.byDefault[i]
}

// median is the round whose ratio is the median (the lower middle of an
// even number).
func (d durabilityRun) median() int {
	idx := make([]int, len(d.byDefault))
	for i := range idx {
		idx[i] = i
	}
	slices.SortFunc(idx, func(a, b int) int { return cmp.Compare(d.ratio(a), d.ratio(b)) })
	return idx[(len(idx)-1)/2]
}

// durabilityNodes are the NATS layouts compared: one server (worker --dev,
// deploy/nats/dev.conf) and the three-node cluster of deploy/nats.
var durabilityNodes = []int{1, 3}

// durability measures what fsyncing every write costs: for each layout, a
// fleet of RateWorkers worker processes works through DurabilityJobs jobs
// on a fresh NATS with sync_interval at the default and with "always",
// back to back, in each of Rounds rounds (alternating which goes first, so
// that a machine getting busier or quieter favours neither).
func (b *bench) durability(ctx context.Context) ([]durabilityRun, error) {
	cfg := b.cfg
	var runs []durabilityRun
	for _, nodes := range durabilityNodes {
		d := durabilityRun{where: natsSpec{nodes: nodes}.where()}
		for i := range cfg.Rounds {
			syncs := []string{"", "always"}
			if i%2 == 1 {
				slices.Reverse(syncs)
			}
			got := map[string]float64{}
			for _, sync := range syncs {
				ns := natsSpec{nodes: nodes, sync: sync}
				b.logf("durability: %d jobs, %d worker processes, %s (round %d of %d)", cfg.DurabilityJobs, cfg.RateWorkers, ns, i+1, cfg.Rounds)
				run, err := b.throughputOn(ctx, ns, b.workerFleet(cfg.RateWorkers, "unlimited"), cfg.DurabilityJobs, false)
				if err != nil {
					return nil, fmt.Errorf("durability, %s: %w", ns, err)
				}
				got[sync] = run.jobsPerSec
			}
			d.byDefault, d.always = append(d.byDefault, got[""]), append(d.always, got["always"])
		}
		b.logf("  %s: sync_interval always makes %.0f%% of the default's throughput", d.where, 100*d.share())
		runs = append(runs, d)
	}
	return runs, nil
}

// durabilityRows are the table's lines of the fsync comparison.
func (r *report) durabilityRows() []row {
	var rows []row
	for _, d := range r.durability {
		var rounds []string
		for i := range d.byDefault {
			rounds = append(rounds, fmt.Sprintf("%s vs %s", thousands(d.byDefault[i]), thousands(d.always[i])))
		}
		mid := d.median()
		rows = append(rows, row{
			what: fmt.Sprintf("fsync cost: %d worker processes × %d concurrency, unlimited, Graph 0 ms, %s (%d jobs): sync_interval default (2m) vs always",
				r.cfg.RateWorkers, r.cfg.Concurrency, d.where, r.cfg.DurabilityJobs),
			result: fmt.Sprintf("%s jobs/s vs %s jobs/s: always makes **%.0f%%** of the default (rounds, default vs always: %s jobs/s)",
				thousands(d.byDefault[mid]), thousands(d.always[mid]), 100*d.share(), strings.Join(rounds, "; ")),
		})
	}
	return rows
}
