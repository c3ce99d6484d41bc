package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/recoverpasscode/recoverpasscode/gateway"
	"github.com/recoverpasscode/recoverpasscode/ratelimit"
	"github.com/recoverpasscode/recoverpasscode/service"
)

// roleTestWorker makes the test binary a worker process: service.Run,
// configured from the environment the run gives cmd/worker. The tiny run
// uses it instead of building cmd/worker, to keep the test fast.
const roleTestWorker = "test-worker"

// roleTestGateway makes the test binary a gateway process, configured from
// the variables gatewayFleet sets, for the same reason.
const roleTestGateway = "test-gateway"

func TestMain(m *testing.M) {
	switch os.Getenv(roleEnv) {
	case roleRawConsumer:
		os.Exit(rawConsumerMain())
	case roleTestWorker:
		os.Exit(testWorkerMain())
	case roleTestGateway:
		os.Exit(testGatewayMain())
	case rolePlainHTTP:
		os.Exit(plainHTTPMain())
	}
	os.Exit(m.Run())
}

// testWorkerMain runs a worker from the variables workerEnv sets.
func testWorkerMain() int {
	cfg := service.Config{
		GraphURL:  os.Getenv("GRAPH_BASE_URL"),
		Tenants:   strings.Split(os.Getenv("RECOVER_TENANTS"), ","),
		HTTPAddr:  os.Getenv("RECOVER_HTTP_ADDR"),
		Name:      os.Getenv("RECOVER_WORKER_NAME"),
		LogLevel:  os.Getenv("RECOVER_LOG_LEVEL"),
		LogFormat: os.Getenv("RECOVER_LOG_FORMAT"),
		Pprof:     os.Getenv("RECOVER_PPROF") == "true",
	}
	if r := os.Getenv("RECOVER_REPLICAS"); r != "" {
		var err error
		if cfg.Replicas, err = strconv.Atoi(r); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
	}
	cfg.NATS.URL = os.Getenv("NATS_URL")
	cfg.Credential.TenantID = os.Getenv("AZURE_TENANT_ID")
	cfg.Credential.ClientID = os.Getenv("AZURE_CLIENT_ID")
	cfg.Credential.ClientSecret = os.Getenv("AZURE_CLIENT_SECRET")
	cfg.Credential.AuthorityHost = os.Getenv("AZURE_AUTHORITY_HOST")
	cfg.Credential.GraphBaseURL = cfg.GraphURL
	var err error
	if cfg.Rate, err = ratelimit.ParseRate(os.Getenv("RECOVER_RATE_LIMIT")); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	if cfg.Concurrency, err = strconv.Atoi(os.Getenv("RECOVER_CONCURRENCY")); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := service.Run(ctx, ctx, cfg, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// testGatewayMain serves a gateway from the variables gatewayFleet sets,
// as cmd/gateway would.
func testGatewayMain() int {
	sources, err := gateway.ParseSourcesEnv(os.Getenv("GATEWAY_SOURCES"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	nc, err := nats.Connect(os.Getenv("NATS_URL"), nats.ReconnectBufSize(-1))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer nc.Close()
	gw, err := gateway.New(gateway.Config{NATS: nc, TenantID: os.Getenv("AZURE_TENANT_ID"), Sources: sources, Pprof: os.Getenv("RECOVER_PPROF") == "true"})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	ln, err := net.Listen("tcp", os.Getenv("GATEWAY_HTTP_ADDR"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := gw.Serve(ctx, ctx, ln); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// TestTinyRun runs every measurement at a tiny size, so the program keeps
// working: the table must come out with every row.
func TestTinyRun(t *testing.T) {
	self := func(role string) func() *exec.Cmd {
		return func() *exec.Cmd {
			cmd := exec.Command(os.Args[0])
			cmd.Env = []string{roleEnv + "=" + role}
			return cmd
		}
	}
	cfg := config{
		Jobs:           200,
		Processes:      []int{1, 2},
		Rounds:         2,
		Concurrency:    8,
		LatencySamples: 5,
		Rates:          []ratelimit.Rate{{N: 5, Per: 500 * time.Millisecond}},
		RateTime:       time.Second,
		RateLatency:    20 * time.Millisecond,
		RateWorkers:    2,
		SharedBudget:   true,
		BudgetTold:     ratelimit.Rate{N: 10, Per: 500 * time.Millisecond},
		BudgetReal:     ratelimit.Rate{N: 5, Per: 500 * time.Millisecond},
		BudgetJobs:     20,
		RecoveryJobs:   40,
		Backlogs:       []int{50, 100},
		DurabilityJobs: 100,
		HistoryEvents:  2000,
		HistorySamples: 3,
		Dir:            t.TempDir(),
		ProfileDir:     t.TempDir(),
		ProfileTime:    time.Second,
		workerCommand:  self(roleTestWorker),
		gatewayCommand: self(roleTestGateway),
		selfCommand:    self(roleRawConsumer),
	}
	if err := cfg.validate(); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	if err := run(t.Context(), cfg, &out, t.Output()); err != nil {
		t.Fatal(err)
	}
	table := out.String()
	t.Log("\n" + table)
	for _, want := range []string{
		"raw JetStream ceiling", "floor: bare consumer", "worker, 1 process(es)", "worker, 2 process(es)",
		"single job at idle", "rate-limited 5/500ms", "with 50 jobs queued", "with 100 jobs queued",
		"shared budget, a cold fleet: told 10/500ms, Graph leaves 5/500ms", "shared budget, the fleet restarted",
		"shared budget: the other app stops",
		"the median of 2 rounds", "; rounds: ",
		"gateway baseline: direct JetStream publishes", "gateway, HTTP alone: a do-nothing HTTP server", "gateway floor: the two JetStream writes", "gateway: `POST /v1/jobs`",
		"gateway: `POST` with `Prefer: wait` at idle", " of the floor; the median of 2 rounds",
		"fsync cost: 2 worker processes", "1 node (100 jobs): sync_interval default (2m) vs always",
		"3-node cluster (R3) (100 jobs)",
		"the unit: a direct get of one audit event", "device history (`history.Reader.Device`) of a random device",
		"device history of the chatty device (20 events, ", "first lookup after a nats-server restart",
	} {
		if !strings.Contains(table, want) {
			t.Errorf("the table has no row %q", want)
		}
	}
	for _, name := range []string{"raw-raw-1", "raw-nats-and-graph", "floor-floor-1", "worker-1p-worker-1", "worker-2p-worker-2", "worker-2p-nats-and-graph",
		"gateway-submit-gateway-1", "gateway-submit-nats-and-graph", "gateway-wait-gateway-1", "gateway-wait-gateway-1.trace"} {
		if filepath.Ext(name) == "" {
			name += ".pprof"
		}
		if fi, err := os.Stat(filepath.Join(cfg.ProfileDir, name)); err != nil || fi.Size() == 0 {
			t.Errorf("profile %s: %v", name, err)
		}
	}
}

func TestParseBench(t *testing.T) {
	out := `goos: linux
pkg: github.com/recoverpasscode/recoverpasscode/job
BenchmarkHandle/new-2         	    2000	   1252001 ns/op	         3.000 kvops/op	   21160 B/op	     234 allocs/op
BenchmarkHandle/replayed      	    2000	    808563 ns/op	   16074 B/op	     166 allocs/op
PASS
`
	lines, err := parseBench(out)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name          string
		allocs, bytes float64
	}{
		{"BenchmarkHandle/new", 234, 21160},
		{"BenchmarkHandle/replayed", 166, 16074},
	}
	if len(lines) != len(tests) {
		t.Fatalf("got %d lines, want %d", len(lines), len(tests))
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := lines[i]
			if l.name != tt.name || l.metrics["allocs/op"] != tt.allocs || l.metrics["B/op"] != tt.bytes {
				t.Errorf("got %+v", l)
			}
		})
	}
	if _, err := parseBench("FAIL\n"); err == nil {
		t.Error("output without results parsed")
	}
}

func TestFillRate(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	tests := []struct {
		name string
		f    fill
		want float64
	}{
		{"steady 1 per ms", fill{at: []time.Time{at(0), at(50), at(100)}, n: []uint64{0, 50, 100}}, 1000},
		{"start-up excluded", fill{at: []time.Time{at(0), at(500), at(510), at(600)}, n: []uint64{0, 0, 10, 100}}, 1000},
		{"first poll past 10%", fill{at: []time.Time{at(0), at(40)}, n: []uint64{50, 90}}, 1000},
		{"first poll after the fleet past 90%: timed from the count before it", fill{at: []time.Time{at(0), at(100)}, n: []uint64{0, 100}}, 1000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.f.rate(100)
			if err != nil || got < tt.want*0.999 || got > tt.want*1.001 {
				t.Errorf("rate %v, %v; want %v", got, err, tt.want)
			}
		})
	}
	if _, err := (fill{at: []time.Time{at(0)}, n: []uint64{100}}).rate(100); err == nil {
		t.Error("a rate from one poll")
	}
}

func TestParseConfig(t *testing.T) {
	tests := []struct {
		name  string
		args  []string
		check func(config) bool
	}{
		{"full by default", nil, func(c config) bool { return c.Jobs == 10000 && len(c.Rates) == 2 && c.HandlerBench && c.Rounds == 3 }},
		{"quick", []string{"--quick"}, func(c config) bool { return c.Jobs == 2000 && c.Backlogs[1] == 20000 && c.Rounds == 1 }},
		{"a flag overrides quick", []string{"--quick", "--jobs", "500", "--rates", "10/2s"}, func(c config) bool {
			return c.Jobs == 500 && c.Rates[0] == ratelimit.Rate{N: 10, Per: 2 * time.Second} && c.LatencySamples == 100
		}},
		{"every row by default", nil, func(c config) bool { return c.measures("throughput") && c.measures("gateway") }},
		{"the gateway's rows alone", []string{"--rows", "gateway"}, func(c config) bool {
			return c.measures("gateway") && !c.measures("throughput") && !c.measures("rss") && !c.measures("latency")
		}},
		{"all", []string{"--rows", "latency,all"}, func(c config) bool { return c.Rows == nil }},
		{"the device history alone, quick", []string{"--quick", "--rows", "history"}, func(c config) bool {
			return c.measures("history") && !c.measures("gateway") && !c.needsWorker() && c.HistoryEvents == 100_000
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := parseConfig(tt.args, io.Discard)
			if err != nil || !tt.check(c) {
				t.Errorf("got %+v, %v", c, err)
			}
		})
	}
	for _, bad := range [][]string{{"--rates", "unlimited"}, {"--jobs", "1"}, {"--backlogs", "x"}, {"--rows", "gatway"}, {"--rows", ","}} {
		if _, err := parseConfig(bad, io.Discard); err == nil {
			t.Errorf("%v: no error", bad)
		}
	}
}

func TestSteadyShare(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(ms ...int) []time.Time {
		var out []time.Time
		for _, m := range ms {
			out = append(out, t0.Add(time.Duration(m)*time.Millisecond))
		}
		return out
	}
	r := ratelimit.Rate{N: 2, Per: time.Second}
	tests := []struct {
		name     string
		arrivals []time.Time
		want     float64
	}{
		{"perfect", at(0, 0, 1000, 1000, 2000, 2000), 1},
		{"a slot comes back 100ms late", at(0, 0, 1100, 1100), 1 / 1.1},
		{"a slow first burst does not count", at(0, 300, 1000, 1300, 2000, 2300), 1},
		{"no pairs", at(0, 0), 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := steadyShare(tt.arrivals, r); got < tt.want-1e-9 || got > tt.want+1e-9 {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestMedianRound(t *testing.T) {
	rd := func(raw, worker float64) round {
		return round{raw: throughputRun{jobsPerSec: raw}, workers: []throughputRun{{jobsPerSec: worker}}}
	}
	tests := []struct {
		name   string
		rounds []round
		want   float64 // the chosen round's share
	}{
		{"one", []round{rd(100, 30)}, 0.3},
		{"three: the middle share, not the middle throughput", []round{rd(100, 20), rd(50, 25), rd(200, 60)}, 0.3},
		{"two: the lower", []round{rd(100, 40), rd(100, 20)}, 0.2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := medianRound(tt.rounds).share(); got < tt.want-1e-9 || got > tt.want+1e-9 {
				t.Errorf("median share %v, want %v", got, tt.want)
			}
		})
	}
}
