package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// bench is one run: its configuration, its temporary directory and how to
// start its child processes.
type bench struct {
	cfg      config
	dir      string
	progress io.Writer
	// workerCmd and gatewayCmd return the command of one worker process
	// and one gateway process.
	workerCmd, gatewayCmd func() *exec.Cmd
	// selfCmd returns a command running this program (for the raw
	// consumer).
	selfCmd func() *exec.Cmd
}

// newBench prepares a run: a temporary directory and a worker binary.
func newBench(ctx context.Context, cfg config, progress io.Writer) (*bench, error) {
	dir, err := os.MkdirTemp(cfg.Dir, "recoverpasscode-bench-")
	if err != nil {
		return nil, err
	}
	b := &bench{cfg: cfg, dir: dir, progress: progress, workerCmd: cfg.workerCommand, gatewayCmd: cfg.gatewayCommand, selfCmd: cfg.selfCommand}
	if b.selfCmd == nil {
		self, err := os.Executable()
		if err != nil {
			b.close()
			return nil, fmt.Errorf("find this program: %w", err)
		}
		b.selfCmd = func() *exec.Cmd { return exec.Command(self) }
	}
	if b.workerCmd == nil && cfg.needsWorker() {
		bin := cfg.WorkerBin
		if bin == "" {
			if bin, err = b.build(ctx, "worker"); err != nil {
				b.close()
				return nil, err
			}
		}
		b.workerCmd = func() *exec.Cmd { return exec.Command(bin) }
	}
	if b.gatewayCmd == nil && cfg.measures("gateway") {
		bin := cfg.GatewayBin
		if bin == "" {
			if bin, err = b.build(ctx, "gateway"); err != nil {
				b.close()
				return nil, err
			}
		}
		b.gatewayCmd = gatewayCommand(bin)
	}
	return b, nil
}

// close removes the run's temporary files.
func (b *bench) close() { _ = os.RemoveAll(b.dir) }

// logf reports progress.
func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(b.progress, "%s  "+format+"\n", append([]any{time.Now().Format(time.TimeOnly)}, args...)...)
}

// build builds cmd/<name> of the module the current directory is in, as a
// release would, into the run's directory.
func (b *bench) build(ctx context.Context, name string) (string, error) {
	root, err := moduleRoot(ctx)
	if err != nil {
		return "", err
	}
	bin := filepath.Join(b.dir, name)
	b.logf("building %s", filepath.Join(root, "cmd", name))
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/"+name)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/%s: %w\n%s", name, err, out)
	}
	return bin, nil
}

// moduleRoot is the directory of the go.mod governing the current
// directory.
func moduleRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("not inside the recoverpasscode module: run from its root, or pass --worker-bin")
	}
	return filepath.Dir(gomod), nil
}

// round runs the unlimited throughput measurements once each, back to back:
// the raw ceiling, the floor and every fleet size. Only the first round is
// profiled.
func (b *bench) round(ctx context.Context, i int) (round, error) {
	cfg := b.cfg
	var rd round
	var err error
	profile := cfg.ProfileDir != "" && i == 0
	b.logf("round %d of %d", i+1, cfg.Rounds)
	b.logf("raw JetStream ceiling: %d jobs, 1 bare consumer process, %d in flight", cfg.Jobs, cfg.Concurrency)
	if rd.raw, err = b.throughput(ctx, b.rawFleet(), cfg.Jobs, profile); err != nil {
		return rd, fmt.Errorf("raw ceiling: %w", err)
	}
	b.logf("floor: %d jobs, 1 bare consumer doing the worker's I/O per job (claim, Graph, outcome, result, 2 audit events, ack)", cfg.Jobs)
	if rd.floor, err = b.throughput(ctx, b.floorFleet(), cfg.Jobs, profile); err != nil {
		return rd, fmt.Errorf("floor: %w", err)
	}
	for _, n := range cfg.Processes {
		b.logf("worker throughput: %d jobs, %d worker process(es), unlimited, Graph at 0 ms", cfg.Jobs, n)
		run, err := b.throughput(ctx, b.workerFleet(n, "unlimited"), cfg.Jobs, profile)
		if err != nil {
			return rd, fmt.Errorf("%d worker(s): %w", n, err)
		}
		rd.workers = append(rd.workers, run)
	}
	b.logf("  round %d: the worker made %.0f%% of the raw ceiling", i+1, 100*rd.share())
	return rd, nil
}

// measure runs every measurement in turn, each on a fresh stack.
func (b *bench) measure(ctx context.Context) (*report, error) {
	cfg := b.cfg
	rep := &report{machine: describeMachine(), cfg: cfg}
	started := time.Now()
	var err error

	for i := range cfg.Rounds {
		if !cfg.measures("throughput") {
			break
		}
		rd, err := b.round(ctx, i)
		if err != nil {
			return nil, err
		}
		rep.rounds = append(rep.rounds, rd)
	}
	rep.round = medianRound(rep.rounds)

	if cfg.measures("latency") {
		b.logf("latency at idle: %d sequential jobs, 1 worker", cfg.LatencySamples)
		if rep.latency, err = b.latency(ctx); err != nil {
			return nil, fmt.Errorf("latency: %w", err)
		}
	}

	for _, r := range cfg.Rates {
		if !cfg.measures("rate") {
			break
		}
		b.logf("rate-limited: %s, %d jobs, %d workers, Graph at %s", r, cfg.rateJobs(r), cfg.RateWorkers, cfg.RateLatency)
		run, err := b.rateLimited(ctx, r)
		if err != nil {
			return nil, fmt.Errorf("rate %s: %w", r, err)
		}
		rep.rates = append(rep.rates, run)
	}

	if cfg.SharedBudget && cfg.measures("budget") {
		b.logf("shared budget: told %s, Graph leaves %s, %d jobs, %d workers, Graph at %s; then Graph leaves %s and %d jobs more",
			cfg.BudgetTold, cfg.BudgetReal, cfg.BudgetJobs, cfg.RateWorkers, cfg.RateLatency, cfg.BudgetTold, cfg.RecoveryJobs)
		run, err := b.sharedBudget(ctx)
		if err != nil {
			return nil, fmt.Errorf("shared budget: %w", err)
		}
		rep.budget = &run
	}

	if cfg.DurabilityJobs > 0 && cfg.measures("durability") {
		if rep.durability, err = b.durability(ctx); err != nil {
			return nil, err
		}
	}

	if cfg.HandlerBench && cfg.measures("handler") {
		b.logf("job handler allocations: go test -bench BenchmarkHandle -benchmem ./job")
		if rep.handler, err = b.handlerAllocs(ctx); err != nil {
			return nil, fmt.Errorf("handler benchmark: %w", err)
		}
	}

	for _, n := range cfg.Backlogs {
		if !cfg.measures("rss") {
			break
		}
		b.logf("peak RSS: %d jobs queued before 1 worker starts", n)
		run, err := b.throughput(ctx, b.workerFleet(1, "unlimited"), n, false)
		if err != nil {
			return nil, fmt.Errorf("backlog %d: %w", n, err)
		}
		rep.backlogs = append(rep.backlogs, run)
	}
	if cfg.measures("gateway") {
		for i := range cfg.Rounds {
			rd, err := b.submissions(ctx, i)
			if err != nil {
				return nil, fmt.Errorf("gateway: %w", err)
			}
			rep.submits = append(rep.submits, rd)
		}
		rep.submit = medianSubmitRound(rep.submits)
		b.logf("gateway latency at idle: %d sequential POSTs with Prefer: wait, 1 worker", cfg.LatencySamples)
		if rep.gatewayLatency, err = b.gatewayLatency(ctx); err != nil {
			return nil, fmt.Errorf("gateway latency: %w", err)
		}
	}
	if cfg.HistoryEvents > 0 && cfg.measures("history") {
		if rep.history, err = b.history(ctx); err != nil {
			return nil, fmt.Errorf("device history: %w", err)
		}
	}
	rep.elapsed = time.Since(started)
	b.logf("done in %s", rep.elapsed.Round(time.Second))
	return rep, nil
}
