package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/recoverpasscode/recoverpasscode/ratelimit"
)

// config is what one run measures, and at what size.
type config struct {
	// Jobs is the number of jobs of each throughput run (raw consumer, 1 and
	// 3 workers). Defaults to 10000; 2000 with --quick.
	Jobs int
	// Processes lists the fleet sizes of the unlimited throughput runs.
	// Defaults to 1 and 3.
	Processes []int
	// Rounds is how often the unlimited throughput runs (raw, floor, each
	// fleet) are repeated, back to back; the table shows the median round
	// and every round's ratios. Defaults to 3; 1 with --quick.
	Rounds int
	// Concurrency is RECOVER_CONCURRENCY of each worker, and the jobs the
	// raw consumer keeps in flight. Defaults to 32, the worker's default.
	Concurrency int
	// LatencySamples is the number of sequential jobs timed at idle.
	// Defaults to 200; 100 with --quick.
	LatencySamples int
	// Rates are the limits of the rate-limited runs, each enforced by the
	// Graph double too. Defaults to Intune's 200/20s and the scaled 20/1s;
	// 20/1s alone with --quick.
	Rates []ratelimit.Rate
	// RateTime is about how long each rate-limited run takes: its batch is
	// the rate's burst plus RateTime's worth of jobs at the rate. Defaults
	// to 60s; 20s with --quick.
	RateTime time.Duration
	// RateLatency is the Graph double's latency in the rate-limited runs.
	// Defaults to 300ms.
	RateLatency time.Duration
	// RateWorkers is the number of worker processes sharing the limit.
	// Defaults to 3.
	RateWorkers int
	// SharedBudget runs the shared-budget measurement: the workers told
	// BudgetTold while Graph leaves them BudgetReal, then all of it.
	// Defaults to true.
	SharedBudget bool
	// BudgetTold and BudgetReal are the rate the workers are told and the
	// rate Graph leaves them. Default to 40/2s and 20/2s, the measurement
	// of issue 16.
	BudgetTold, BudgetReal ratelimit.Rate
	// BudgetJobs is the shared-budget batch, RecoveryJobs the batch queued
	// when the other app stops. Default to 300 and 800.
	BudgetJobs, RecoveryJobs int
	// Backlogs are the queue depths at which a worker's peak RSS is
	// compared. Defaults to 10000 and 100000; 2000 and 20000 with --quick.
	Backlogs []int
	// DurabilityJobs is the batch of each fsync comparison run (see
	// durability); zero skips the comparison. Defaults to 3000; 1000 with
	// --quick.
	DurabilityJobs int
	// HistoryEvents is the size of the audit stream of the device-history
	// run (see history.go); zero skips it. Defaults to 1000000; 100000 with
	// --quick.
	HistoryEvents int
	// HistorySamples is the number of lookups timed per kind in that run.
	// Defaults to 200; 50 with --quick.
	HistorySamples int
	// HandlerBench runs go test -bench of the job handler for allocations
	// per job. Defaults to true.
	HandlerBench bool
	// HandlerBenchtime is its -benchtime. Defaults to 2000x; 300x with
	// --quick.
	HandlerBenchtime string
	// Rows selects the measurements to make, by group (rowGroups): the
	// table then shows only theirs. Defaults to all of them.
	Rows map[string]bool
	// WorkerBin is a built cmd/worker. Empty builds one from the module the
	// current directory is in.
	WorkerBin string
	// GatewayBin is a built cmd/gateway. Empty builds one likewise.
	GatewayBin string
	// Dir holds the run's temporary files. Defaults to the system's.
	Dir string
	// ProfileDir, when set, receives CPU profiles of every unlimited
	// throughput run (each child process's and this process's), and of the
	// first round's HTTP submissions and the gateway latency run, with an
	// execution trace of the gateway.
	ProfileDir string
	// ProfileTime is how long each profile covers from the moment the
	// fleet is ready. Defaults to 2s.
	ProfileTime time.Duration

	// workerCommand, when set, replaces WorkerBin: it returns the command
	// of one worker process, configured by the environment the run adds.
	workerCommand func() *exec.Cmd
	// gatewayCommand, when set, replaces GatewayBin likewise.
	gatewayCommand func() *exec.Cmd
	// selfCommand returns a command running this program, for the raw
	// consumer role. Defaults to os.Executable.
	selfCommand func() *exec.Cmd
}

// rowGroups are the measurements --rows selects, in the table's order.
var rowGroups = []string{"throughput", "latency", "rate", "budget", "durability", "handler", "rss", "gateway", "history"}

// measures reports whether the run makes the measurements of group.
func (c config) measures(group string) bool { return c.Rows == nil || c.Rows[group] }

// needsWorker reports whether a measurement of the run starts worker
// processes (the handler benchmark and the device history do not).
func (c config) needsWorker() bool {
	for _, g := range rowGroups {
		if g != "handler" && g != "history" && c.measures(g) {
			return true
		}
	}
	return false
}

// quickConfig and fullConfig are the two sizes; flags change either.
func fullConfig() config {
	return config{
		Jobs:             10000,
		Processes:        []int{1, 3},
		Rounds:           3,
		Concurrency:      32,
		LatencySamples:   200,
		Rates:            []ratelimit.Rate{ratelimit.DefaultRate, {N: 20, Per: time.Second}},
		RateTime:         60 * time.Second,
		RateLatency:      300 * time.Millisecond,
		RateWorkers:      3,
		SharedBudget:     true,
		BudgetTold:       ratelimit.Rate{N: 40, Per: 2 * time.Second},
		BudgetReal:       ratelimit.Rate{N: 20, Per: 2 * time.Second},
		BudgetJobs:       300,
		RecoveryJobs:     800,
		Backlogs:         []int{10000, 100000},
		DurabilityJobs:   3000,
		HistoryEvents:    1_000_000,
		HistorySamples:   200,
		HandlerBench:     true,
		HandlerBenchtime: "2000x",
		ProfileTime:      2 * time.Second,
	}
}

func quickConfig() config {
	c := fullConfig()
	c.Jobs = 2000
	c.Rounds = 1
	c.LatencySamples = 100
	c.Rates = []ratelimit.Rate{{N: 20, Per: time.Second}}
	c.RateTime = 20 * time.Second
	c.Backlogs = []int{2000, 20000}
	c.DurabilityJobs = 1000
	c.HistoryEvents = 100_000
	c.HistorySamples = 50
	c.HandlerBenchtime = "300x"
	c.SharedBudget = false // a minute and more on its own
	return c
}

const usageHeader = `bench measures the worker against the raw JetStream ceiling and the Graph
rate limit, and the HTTP gateway against direct JetStream publishes, and prints a markdown
table. Run it from the module root.

Usage:
  go run ./bench [--quick] [--rows gateway,…] [flags]

Flags (each overrides the size --quick or the full run chose):
`

// parseConfig reads the flags. --quick picks the smaller sizes; any other
// flag given overrides them.
func parseConfig(args []string, usageOut io.Writer) (config, error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(usageOut)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usageHeader)
		fs.PrintDefaults()
	}
	quick := fs.Bool("quick", false, "smaller sizes: under a minute instead of a few")
	full := fullConfig()
	jobs := fs.Int("jobs", full.Jobs, "jobs per throughput run (quick: 2000)")
	procs := fs.String("processes", "1,3", "worker fleet sizes of the unlimited throughput runs")
	rounds := fs.Int("rounds", full.Rounds, "times the unlimited throughput runs are repeated; the table shows the median round (quick: 1)")
	conc := fs.Int("concurrency", full.Concurrency, "RECOVER_CONCURRENCY of each worker, and jobs in flight in the raw consumer")
	samples := fs.Int("latency-samples", full.LatencySamples, "sequential jobs timed at idle (quick: 100)")
	rates := fs.String("rates", "200/20s,20/1s", "limits of the rate-limited runs, comma-separated (quick: 20/1s)")
	rateTime := fs.Duration("rate-time", full.RateTime, "about how long each rate-limited run takes (quick: 20s)")
	rateLatency := fs.Duration("rate-latency", full.RateLatency, "Graph double latency in the rate-limited runs")
	rateWorkers := fs.Int("rate-workers", full.RateWorkers, "worker processes sharing the limit")
	sharedBudget := fs.Bool("shared-budget", full.SharedBudget, "measure workers told 40/2s against a Graph that leaves them 20/2s, then 40/2s")
	backlogs := fs.String("backlogs", "10000,100000", "queue depths whose peak RSS is compared (quick: 2000,20000)")
	durabilityJobs := fs.Int("durability-jobs", full.DurabilityJobs, "jobs per run of the fsync comparison, sync_interval default vs always; 0 skips it (quick: 1000)")
	historyEvents := fs.Int("history-events", full.HistoryEvents, "audit events in the stream of the device-history lookups; 0 skips them (quick: 100000)")
	historySamples := fs.Int("history-samples", full.HistorySamples, "lookups timed per kind in the device-history run (quick: 50)")
	handler := fs.Bool("handler-bench", true, "run go test -bench of the job handler for allocations per job")
	benchtime := fs.String("handler-benchtime", full.HandlerBenchtime, "-benchtime of the handler benchmark (quick: 300x)")
	rows := fs.String("rows", "all", "measurements to make, comma-separated: "+strings.Join(rowGroups, ", ")+", or all")
	workerBin := fs.String("worker-bin", "", "a built cmd/worker (default: build one)")
	gatewayBin := fs.String("gateway-bin", "", "a built cmd/gateway (default: build one)")
	dir := fs.String("dir", "", "directory for temporary files (default: the system's)")
	profileDir := fs.String("profile", "", "directory to write CPU profiles of the unlimited throughput runs and the gateway runs (and a trace of the gateway) into (workers and gateway run with RECOVER_PPROF)")
	profileTime := fs.Duration("profile-time", full.ProfileTime, "how long each CPU profile covers, from the moment the fleet is ready")
	if err := fs.Parse(args); err != nil {
		return config{}, err
	}
	if fs.NArg() > 0 {
		return config{}, fmt.Errorf("unexpected argument %q (see --help)", fs.Arg(0))
	}
	cfg := full
	if *quick {
		cfg = quickConfig()
	}
	var errs []error
	fs.Visit(func(f *flag.Flag) {
		var err error
		switch f.Name {
		case "jobs":
			cfg.Jobs = *jobs
		case "processes":
			cfg.Processes, err = parseInts(*procs)
		case "rounds":
			cfg.Rounds = *rounds
		case "concurrency":
			cfg.Concurrency = *conc
		case "latency-samples":
			cfg.LatencySamples = *samples
		case "rates":
			cfg.Rates, err = parseRates(*rates)
		case "rate-time":
			cfg.RateTime = *rateTime
		case "rate-latency":
			cfg.RateLatency = *rateLatency
		case "rate-workers":
			cfg.RateWorkers = *rateWorkers
		case "shared-budget":
			cfg.SharedBudget = *sharedBudget
		case "backlogs":
			cfg.Backlogs, err = parseInts(*backlogs)
		case "durability-jobs":
			cfg.DurabilityJobs = *durabilityJobs
		case "history-events":
			cfg.HistoryEvents = *historyEvents
		case "history-samples":
			cfg.HistorySamples = *historySamples
		case "handler-bench":
			cfg.HandlerBench = *handler
		case "handler-benchtime":
			cfg.HandlerBenchtime = *benchtime
		case "rows":
			cfg.Rows, err = parseRows(*rows)
		case "worker-bin":
			cfg.WorkerBin = *workerBin
		case "gateway-bin":
			cfg.GatewayBin = *gatewayBin
		case "dir":
			cfg.Dir = *dir
		case "profile":
			cfg.ProfileDir = *profileDir
		case "profile-time":
			cfg.ProfileTime = *profileTime
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("--%s: %w", f.Name, err))
		}
	})
	if err := errors.Join(errs...); err != nil {
		return config{}, err
	}
	return cfg, cfg.validate()
}

// validate reports sizes that cannot be measured.
func (c config) validate() error {
	var errs []error
	if c.Jobs < 10 {
		errs = append(errs, errors.New("--jobs: want at least 10"))
	}
	if c.Concurrency < 1 || c.RateWorkers < 1 || c.Rounds < 1 {
		errs = append(errs, errors.New("--concurrency, --rate-workers and --rounds: want at least 1"))
	}
	if c.DurabilityJobs != 0 && c.DurabilityJobs < 10 {
		errs = append(errs, errors.New("--durability-jobs: want at least 10 (or 0 to skip the comparison)"))
	}
	if c.HistoryEvents != 0 && (c.HistoryEvents < 1000 || c.HistorySamples < 1) {
		errs = append(errs, errors.New("--history-events: want at least 1000 (or 0 to skip the run), and --history-samples at least 1"))
	}
	if c.RateTime < 0 || c.RateLatency < 0 {
		errs = append(errs, errors.New("--rate-time and --rate-latency: want no negative duration"))
	}
	if c.ProfileDir != "" && c.ProfileTime < time.Second {
		errs = append(errs, errors.New("--profile-time: want at least 1s"))
	}
	if c.SharedBudget && (c.BudgetTold.Unlimited() || c.BudgetReal.Unlimited() || c.BudgetReal.N >= c.BudgetTold.N || c.BudgetTold.Per != c.BudgetReal.Per || c.BudgetJobs <= c.BudgetReal.N || c.RecoveryJobs < c.BudgetTold.N) {
		errs = append(errs, errors.New("shared budget: want a real budget below the told one over the same window, and batches larger than a window's worth"))
	}
	for _, r := range c.Rates {
		if r.Unlimited() {
			errs = append(errs, errors.New("--rates: a rate-limited run needs a limit"))
		}
	}
	for _, n := range append(append([]int(nil), c.Processes...), c.Backlogs...) {
		if n < 1 {
			errs = append(errs, errors.New("--processes and --backlogs: want positive numbers"))
			break
		}
	}
	return errors.Join(errs...)
}

// rateJobs is the batch of a rate-limited run: the burst an idle fleet may
// start at once, plus RateTime's worth of jobs at the rate.
func (c config) rateJobs(r ratelimit.Rate) int {
	windows := max(1, int(c.RateTime/r.Per))
	return r.N * (windows + 1)
}

func parseInts(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil {
			return nil, fmt.Errorf("%q is not a whole number", f)
		}
		out = append(out, n)
	}
	return out, nil
}

// parseRows reads --rows: nil (every group) for "all".
func parseRows(s string) (map[string]bool, error) {
	out := map[string]bool{}
	for _, f := range strings.Split(s, ",") {
		switch f = strings.TrimSpace(f); {
		case f == "":
		case f == "all":
			return nil, nil
		case slices.Contains(rowGroups, f):
			out[f] = true
		default:
			return nil, fmt.Errorf("%q is not one of %s, all", f, strings.Join(rowGroups, ", "))
		}
	}
	if len(out) == 0 {
		return nil, errors.New("name at least one group of rows")
	}
	return out, nil
}

func parseRates(s string) ([]ratelimit.Rate, error) {
	var out []ratelimit.Rate
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		r, err := ratelimit.ParseRate(f)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}
