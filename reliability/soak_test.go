package reliability_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/recoverpasscode/recoverpasscode/devserver/devservertest"
	"github.com/recoverpasscode/recoverpasscode/graph/graphsim"
	"github.com/recoverpasscode/recoverpasscode/wire"
)

var (
	soak     = flag.Bool("soak", false, "run TestSoak: many jobs through three worker processes, for minutes")
	soakJobs = flag.Int("soak-jobs", 100_000, "jobs TestSoak submits")
)

// TestSoak pushes -soak-jobs jobs through three worker processes with no
// rate limit, sampling each process's RSS, heap and goroutines over time,
// then checks every invariant and that nothing grows once the queue has
// drained: goroutines return to their idle count (not counting the pair
// each kept-alive HTTP connection to Graph holds, which varies with how
// many calls overlapped last) and the heap stays flat.
// Run it with: go test ./reliability -run TestSoak -soak -timeout 60m -v
func TestSoak(t *testing.T) {
	if !*soak {
		t.Skip("the soak runs with -soak")
	}
	ns := devservertest.Start(t)
	r := newRig(t, graphsim.Config{Limit: -1}, ns.URL(), 1)
	var procs []*soakProc
	for i := range 3 {
		cfg := r.config(fmt.Sprintf("soak-%d", i))
		cfg.Concurrency = 32
		cfg.Lease = 30 * time.Second
		cfg.AckWait = 30 * time.Second
		cfg.AttemptTimeout = 10 * time.Second
		stats := filepath.Join(t.TempDir(), "stats.jsonl")
		procs = append(procs, &soakProc{proc: r.startProcess(cfg, stats), stats: stats})
	}
	// A warm-up batch opens what a worker keeps open while idle (HTTP
	// connections to Graph, up to its concurrency), so the baseline is a
	// worker at rest after work, not a worker that has never worked.
	warm, warmWant := batch("warmup", 1_000_000, 2000, 0)
	r.submitAsync(warm)
	r.sampleUntilDrained(t, procs, time.Now(), uint64(len(warm)))
	idle := waitIdle(t, procs)
	t.Logf("at rest after a warm-up of %d jobs: %s", len(warm), idle)

	n := *soakJobs
	jobs, want := batch("soak", 0, n, 0)
	start := time.Now()
	r.submitAsync(jobs)
	t.Logf("submitted %d jobs in %s", n, time.Since(start).Round(time.Millisecond))

	t.Logf("%8s %8s %10s  %s", "elapsed", "results", "NATS+Graph", "per worker: RSS MiB / live heap MiB / goroutines (of which HTTP connections)")
	drained := r.sampleUntilDrained(t, procs, start, uint64(n+len(warm)))
	t.Logf("drained %d jobs in %s (%.0f jobs/s)", n, drained.Round(time.Second), float64(n)/drained.Seconds())

	after := sampleAll(procs)
	<-time.After(30 * time.Second) // an idle half-minute: what leaks keeps growing
	later := sampleAll(procs)
	t.Logf("after the drain:   %s", after)
	t.Logf("30 s idle later:   %s", later)
	for i := range procs {
		if later[i].other() > idle[i].other()+5 {
			t.Errorf("%s: %d goroutines besides HTTP connections idle after the batch, %d before", procs[i].name, later[i].other(), idle[i].other())
		}
		if later[i].HeapInuse > after[i].HeapInuse+1<<20 {
			t.Errorf("%s: live heap grew while idle, %d → %d bytes", procs[i].name, after[i].HeapInuse, later[i].HeapInuse)
		}
		if later[i].HeapInuse > idle[i].HeapInuse*3/2+2<<20 {
			t.Errorf("%s: live heap %d bytes after %d jobs, %d at rest before them", procs[i].name, later[i].HeapInuse, n, idle[i].HeapInuse)
		}
	}
	r.settle(append(want, warmWant...), 5*time.Minute)
}

// soakProc is a worker process and its stats file.
type soakProc struct {
	*proc
	stats string
}

// sample is one process's figures at one time.
type sample struct {
	RSS uint64 // bytes, from /proc
	// HeapInuse is the live heap: measured right after a collection.
	HeapInuse  uint64 `json:"heapInuse"`
	Goroutines int    `json:"goroutines"`
	// HTTPConns counts the goroutines of kept-alive HTTP connections.
	HTTPConns int `json:"httpConns"`
}

// other counts the goroutines that are not a kept-alive HTTP connection's.
func (s sample) other() int { return s.Goroutines - s.HTTPConns }

type samples []sample

func (s samples) String() string {
	var parts []string
	for _, x := range s {
		parts = append(parts, fmt.Sprintf("%3d / %2d / %3d (%3d)", x.RSS>>20, x.HeapInuse>>20, x.Goroutines, x.HTTPConns))
	}
	return strings.Join(parts, " | ")
}

// read returns the process's latest figures.
func (p *soakProc) read() sample {
	var s sample
	if data, err := os.ReadFile(p.stats); err == nil {
		lines := bytes.Split(bytes.TrimSpace(data), []byte("\n"))
		_ = json.Unmarshal(lines[len(lines)-1], &s)
	}
	s.RSS = rss(p.cmd.Process.Pid)
	return s
}

func sampleAll(procs []*soakProc) samples {
	var out samples
	for _, p := range procs {
		out = append(out, p.read())
	}
	return out
}

// rss reads a process's resident set size from /proc, 0 where there is
// none.
func rss(pid int) uint64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// waitIdle waits until every worker has written figures and its goroutine
// count has held still for three seconds, and returns the figures.
func waitIdle(t *testing.T, procs []*soakProc) samples {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	var last samples
	steady := 0
	for steady < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("workers did not settle: %s", last)
		}
		<-time.After(time.Second)
		cur := sampleAll(procs)
		same := last != nil
		for i := range cur {
			same = same && cur[i].Goroutines > 0 && cur[i].Goroutines == last[i].Goroutines
		}
		if same {
			steady++
		} else {
			steady = 0
		}
		last = cur
	}
	return last
}

// sampleUntilDrained logs the results count, the RSS of this process (the
// NATS server and the Graph double) and every worker's figures every five
// seconds until n results are stored and the queue is empty, and
// returns how long that took from start, to within a quarter second.
func (r *rig) sampleUntilDrained(t *testing.T, procs []*soakProc, start time.Time, n uint64) time.Duration {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Minute)
	defer cancel()
	poll := time.NewTicker(250 * time.Millisecond)
	defer poll.Stop()
	next := start.Add(5 * time.Second)
	for {
		stored := r.resultsStored()
		if stored >= n && r.jobsLeft() == 0 {
			return time.Since(start)
		}
		if time.Now().After(next) {
			t.Logf("%8s %8d %6d MiB  %s", time.Since(start).Round(time.Second), stored, rss(os.Getpid())>>20, sampleAll(procs))
			next = next.Add(5 * time.Second)
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%d of %d results after %s", stored, n, time.Since(start))
		case <-poll.C:
		}
	}
}

// resultsStored counts the messages of the results stream.
func (r *rig) resultsStored() uint64 {
	s, err := r.js.Stream(r.t.Context(), r.names.ResultsStream())
	if err != nil {
		return 0
	}
	info, err := s.Info(r.t.Context())
	if err != nil {
		return 0
	}
	return info.State.Msgs
}

// submitAsync publishes jobs without waiting for each acknowledgement,
// keeping a few thousand in flight, then checks every one was stored.
func (r *rig) submitAsync(jobs []wire.Job) {
	r.t.Helper()
	js, err := jetstream.New(r.nc, jetstream.WithPublishAsyncMaxPending(4096))
	if err != nil {
		r.t.Fatal(err)
	}
	var acks []jetstream.PubAckFuture
	for _, j := range jobs {
		m := nats.NewMsg(r.names.Jobs("soak"))
		m.Data, err = json.Marshal(j)
		if err != nil {
			r.t.Fatal(err)
		}
		m.Header.Set(jetstream.MsgIDHeader, j.ID)
		f, err := js.PublishMsgAsync(m)
		if err != nil {
			r.t.Fatalf("publish %s: %v", j.ID, err)
		}
		acks = append(acks, f)
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(5 * time.Minute):
		r.t.Fatal("publishing did not complete")
	}
	for i, f := range acks {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			r.t.Fatalf("publish %s: %v", jobs[i].ID, err)
		}
	}
}

// httpConnGoroutines counts the goroutines serving kept-alive HTTP
// connections (net/http's persistConn read and write loops).
func httpConnGoroutines() int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	n := 0
	for _, g := range bytes.Split(buf, []byte("\n\n")) {
		if bytes.Contains(g, []byte("net/http.(*persistConn).")) {
			n++
		}
	}
	return n
}

// writeStats appends a line of runtime figures to path every second until
// ctx ends; a soak worker process runs it. It collects garbage first, so the
// heap figure is what is live: a leak shows, garbage does not. On a heap of
// a few MiB a collection a second costs the worker little.
func writeStats(ctx context.Context, path string) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return
	}
	defer f.Close()
	enc := json.NewEncoder(f)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		var ms runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&ms)
		_ = enc.Encode(sample{HeapInuse: ms.HeapInuse, Goroutines: runtime.NumGoroutine(), HTTPConns: httpConnGoroutines()})
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
