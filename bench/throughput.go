package main

import (
	"context"
	"fmt"
	"os/exec"
	"time"

	"github.com/recoverpasscode/recoverpasscode/graph/graphsim"
)

// fleetSpec says which processes a measurement starts.
type fleetSpec struct {
	name  string
	n     int
	cmd   func() *exec.Cmd
	env   func(s *stack, name, httpAddr string) []string
	graph bool // whether each job calls Graph once
}

// rawFleet is the bare consumer: one process, as many jobs in flight as a
// worker.
func (b *bench) rawFleet() fleetSpec {
	return fleetSpec{
		name: "raw",
		n:    1,
		cmd:  b.selfCmd,
		env: func(s *stack, _, httpAddr string) []string {
			return []string{
				roleEnv + "=" + roleRawConsumer,
				"NATS_URL=" + s.url,
				"RECOVER_CONCURRENCY=" + fmt.Sprint(b.cfg.Concurrency),
				"RECOVER_HTTP_ADDR=" + httpAddr,
				"RECOVER_PPROF=" + fmt.Sprint(b.cfg.ProfileDir != ""),
			}
		},
	}
}

// floorFleet is the raw consumer doing the worker's mandatory I/O per job
// (see floor), configured like a worker.
func (b *bench) floorFleet() fleetSpec {
	return fleetSpec{
		name: "floor",
		n:    1,
		cmd:  b.selfCmd,
		env: func(s *stack, name, httpAddr string) []string {
			return append(s.workerEnv(name, "unlimited", b.cfg.Concurrency, httpAddr),
				roleEnv+"="+roleRawConsumer,
				consumerEnv+"="+consumerFloor,
				"RECOVER_PPROF="+fmt.Sprint(b.cfg.ProfileDir != ""))
		},
		graph: true,
	}
}

// workerFleet is n worker processes sharing the limit rate.
func (b *bench) workerFleet(n int, rate string) fleetSpec {
	return fleetSpec{
		name: "worker",
		n:    n,
		cmd:  b.workerCmd,
		env: func(s *stack, name, httpAddr string) []string {
			env := s.workerEnv(name, rate, b.cfg.Concurrency, httpAddr)
			if b.cfg.ProfileDir != "" {
				env = append(env, "RECOVER_PPROF=true")
			}
			return env
		},
		graph: true,
	}
}

// start starts the fleet on s and waits until every process is ready.
func (b *bench) start(ctx context.Context, s *stack, spec fleetSpec) (*fleet, error) {
	return startFleet(ctx, s.dir, spec.name, spec.n, spec.cmd, func(name, addr string) []string {
		return spec.env(s, name, addr)
	})
}

// label names a run's files: "raw", "floor", "worker-1p", "worker-3p".
func (spec fleetSpec) label() string {
	if spec.name == "raw" || spec.name == "floor" {
		return spec.name
	}
	return fmt.Sprintf("%s-%dp", spec.name, spec.n)
}

// throughputRun is what one unlimited run measured.
type throughputRun struct {
	processes int
	jobs      int
	// jobsPerSec is the steady rate, from 10% to 90% of the results.
	jobsPerSec float64
	// peakRSS is the largest VmHWM among the processes, in bytes.
	peakRSS uint64
	// cpu is the CPU time per job of the fleet's processes; serverCPU that
	// of this process: nats-server, the Graph double and the run's polling.
	cpu, serverCPU time.Duration
}

// throughput queues jobs, starts the fleet, and times the results
// stream filling up. The Graph double answers at once with no limit. With
// profile, it also captures CPU profiles (see startProfiles).
func (b *bench) throughput(ctx context.Context, spec fleetSpec, jobs int, profile bool) (throughputRun, error) {
	return b.throughputOn(ctx, natsSpec{}, spec, jobs, profile)
}

// throughputOn is throughput on the NATS that ns describes.
func (b *bench) throughputOn(ctx context.Context, ns natsSpec, spec fleetSpec, jobs int, profile bool) (throughputRun, error) {
	run := throughputRun{processes: spec.n, jobs: jobs}
	s, err := startStackOn(ctx, b.dir, graphsim.Config{Limit: -1}, ns)
	if err != nil {
		return run, err
	}
	defer s.close()
	if err := s.publishJobs(ctx, 0, jobs); err != nil {
		return run, err
	}
	// The count before the fleet starts: on a loaded machine the first
	// poll after the start can come when most results are in, and the
	// rate is then timed from here (see fill.rate).
	before, err := s.sample(ctx)
	if err != nil {
		return run, err
	}
	f, err := b.start(ctx, s, spec)
	if err != nil {
		return run, err
	}
	defer f.stop()
	var prof *profiles
	if profile {
		if prof, err = b.startProfiles(ctx, f, spec.label(), false); err != nil {
			return run, err
		}
	}
	wctx, cancel := context.WithTimeout(ctx, max(2*time.Minute, time.Duration(jobs)*20*time.Millisecond))
	defer cancel()
	cpu0, err := f.cpuTime()
	if err != nil {
		return run, err
	}
	self0 := selfCPU()
	fill, err := s.awaitMore(wctx, before, uint64(jobs), f.exits)
	if err != nil {
		return run, err
	}
	cpu1, err := f.cpuTime()
	if err != nil {
		return run, err
	}
	run.cpu = (cpu1 - cpu0) / time.Duration(jobs)
	run.serverCPU = (selfCPU() - self0) / time.Duration(jobs)
	if run.jobsPerSec, err = fill.rate(jobs); err != nil {
		return run, err
	}
	if run.peakRSS, err = f.peakRSS(); err != nil {
		return run, err
	}
	if prof != nil {
		if err := prof.wait(); err != nil {
			return run, err
		}
	}
	f.stop()
	if err := f.check(); err != nil {
		return run, err
	}
	performed := 0
	if spec.graph {
		performed = jobs
	}
	if err := s.checkClean(ctx, performed); err != nil {
		return run, err
	}
	b.logf("  %.0f jobs/s, peak RSS %s, CPU per job %s in the fleet and %s in nats-server and the Graph double",
		run.jobsPerSec, mib(run.peakRSS), us(run.cpu), us(run.serverCPU))
	return run, nil
}

// us formats d in microseconds.
func us(d time.Duration) string { return fmt.Sprintf("%.0f µs", float64(d)/float64(time.Microsecond)) }

// mib formats bytes as MiB.
func mib(n uint64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
