package reliability_test

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/recoverpasscode/recoverpasscode/devserver/devservertest"
	"github.com/recoverpasscode/recoverpasscode/graph/graphsim"
	"github.com/recoverpasscode/recoverpasscode/internal/testsystem"
	"github.com/recoverpasscode/recoverpasscode/ratelimit"
	"github.com/recoverpasscode/recoverpasscode/reliability"
	"github.com/recoverpasscode/recoverpasscode/wire"
)

var soakFor = flag.Duration("soak-for", time.Hour, "how long TestSoakChurn keeps jobs coming; workers restart about every -soak-for/20 and a NATS node every -soak-for/6")

// churnTenants is how many tenants TestSoakChurn spreads its jobs over,
// each with Intune's own limit.
const churnTenants = 10

// churnRate is the limit per tenant, at Graph and in the workers.
var churnRate = ratelimit.Rate{N: 200, Per: 20 * time.Second}

// TestSoakChurn is an hour of a production day gone bad (behind -soak;
// -soak-for resizes it): jobs for ten tenants arrive at 90% of Intune's
// 200 per 20 s each, Graph answers 2% of calls with a 5xx, three worker
// processes on a three-node cluster (R3) are restarted at random every
// few minutes (half of them SIGKILLed, half stopped softly) and one NATS
// node is stopped and restarted every ten. Then the queue drains. Nothing
// may be lost or doubled, Graph's limit must never answer 429, and the
// workers' RSS and goroutines must be as flat in the last ten minutes as
// in the first (the median over the live workers, which come and go).
// Run it with: go test ./reliability -run TestSoakChurn -soak -timeout 90m -v
func TestSoakChurn(t *testing.T) {
	if !*soak {
		t.Skip("the soak runs with -soak")
	}
	rng := rand.New(rand.NewPCG(17, 0xc4a2))
	c := devservertest.StartCluster(t)
	ctx, cancel := context.WithTimeout(t.Context(), *soakFor+30*time.Minute)
	defer cancel()
	if _, err := c.WaitMetaLeader(ctx); err != nil {
		t.Fatal(err)
	}
	r := newRig(t, graphsim.Config{Limit: churnRate.N, Window: churnRate.Per, Latency: 50 * time.Millisecond}, c.URL(), 3)
	tenants := []string{testsystem.Tenant, testsystem.OtherTenant}
	for i := len(tenants); i < churnTenants; i++ {
		tenants = append(tenants, fmt.Sprintf("66666666-6666-4666-8666-%012d", i))
		r.gs.AddTenant(tenants[i])
	}
	r.gs.SetFaultFunc(faultShare(17, 0.02, func(rng *rand.Rand) graphsim.Fault {
		statuses := []int{http.StatusInternalServerError, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout}
		return graphsim.Fault{Status: statuses[rng.IntN(len(statuses))]}
	}))

	// A worker starting just after a node came back may wait for the
	// streams' leaders and hit nats-io/nats.go#949 (see waitReady).
	r.readyWithin = 3 * time.Minute
	fleet := &churnFleet{r: r, tenants: tenants}
	for range 3 {
		fleet.spawn()
	}
	every := *soakFor / 20
	nodeEvery := *soakFor / 6
	window := min(10*time.Minute, *soakFor/6)

	gen := startGenerator(t, r, tenants, 0.9)
	start := time.Now()
	var samples []fleetSample
	sampleTick := time.NewTicker(5 * time.Second)
	defer sampleTick.Stop()
	nextRestart := start.Add(jittered(rng, every))
	nextNode := start.Add(nodeEvery)
	restarts, nodeRestarts := 0, 0
	for time.Since(start) < *soakFor {
		select {
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		case <-sampleTick.C:
		}
		now := time.Now()
		s := fleet.sample(now.Sub(start))
		samples = append(samples, s)
		t.Logf("%8s %7d jobs %7d results  workers: %s", s.at.Round(time.Second), gen.submitted(), r.resultsStored(), s)
		if now.After(nextRestart) {
			fleet.restart(rng)
			restarts++
			nextRestart = now.Add(jittered(rng, every))
		}
		if now.After(nextNode) {
			i := rng.IntN(c.Size())
			c.Stop(i)
			t.Logf("%8s stopped NATS node %s", time.Since(start).Round(time.Second), c.NodeName(i))
			<-time.After(10 * time.Second) // the node is down for a while, as in a rolling restart
			if err := c.Restart(i); err != nil {
				t.Fatal(err)
			}
			nodeRestarts++
			nextNode = time.Now().Add(nodeEvery)
		}
	}
	jobs := gen.stop()
	t.Logf("%d jobs submitted in %s; %d worker restarts, %d NATS node restarts; draining", len(jobs), time.Since(start).Round(time.Second), restarts, nodeRestarts)

	want := make([]reliability.Expected, len(jobs))
	for i, j := range jobs {
		want[i] = reliability.Expected{JobID: j.ID, Device: j.ManagedDeviceID}
	}
	rep := r.settle(want, 20*time.Minute)
	limited := 0
	for _, call := range r.gs.Calls() {
		if call.LimitRejected {
			limited++
		}
	}
	if limited > 0 {
		t.Errorf("Graph answered %d calls 429 for its limit", limited)
	}
	first, last := between(samples, 0, window), between(samples, *soakFor-window, *soakFor)
	t.Logf("first %s: %s; last %s: %s; %d uncertain results, %d limit 429s", window, first, window, last, rep.Uncertain, limited)
	if last.rss > first.rss*11/10+4<<20 {
		t.Errorf("worker RSS grew: median %d MiB in the first %s, %d MiB in the last", first.rss>>20, window, last.rss>>20)
	}
	if last.goroutines > first.goroutines+10 {
		t.Errorf("worker goroutines grew: median %d (besides HTTP connections) in the first %s, %d in the last", first.goroutines, window, last.goroutines)
	}
}

// jittered is d give or take a quarter.
func jittered(rng *rand.Rand, d time.Duration) time.Duration {
	return d*3/4 + time.Duration(rng.Int64N(int64(d/2)+1))
}

// churnFleet is the worker processes of TestSoakChurn, which come and go.
type churnFleet struct {
	r       *rig
	tenants []string
	mu      sync.Mutex
	procs   []*soakProc
	spawned int
}

// spawn starts one more worker process.
func (f *churnFleet) spawn() {
	cfg := f.r.config(fmt.Sprintf("churn-%d", f.spawned))
	f.spawned++
	cfg.Tenants = f.tenants
	cfg.Rate = churnRate
	cfg.Concurrency = 32
	cfg.Lease, cfg.AckWait, cfg.AttemptTimeout = 30*time.Second, 30*time.Second, 10*time.Second
	cfg.MaxAttempts = 8
	cfg.LogLevel = "warn" // an hour of a line per job would fill the test's memory
	stats := filepath.Join(f.r.t.TempDir(), "stats.jsonl")
	p := &soakProc{proc: f.r.startProcess(cfg, stats), stats: stats}
	f.mu.Lock()
	f.procs = append(f.procs, p)
	f.mu.Unlock()
}

// restart ends a random worker, by SIGKILL or SIGTERM, and starts another.
func (f *churnFleet) restart(rng *rand.Rand) {
	f.mu.Lock()
	i := rng.IntN(len(f.procs))
	victim := f.procs[i]
	f.procs = slices.Delete(f.procs, i, i+1)
	f.mu.Unlock()
	how := "stopped"
	if rng.IntN(2) == 0 {
		victim.kill()
		how = "killed"
	} else {
		victim.stop()
	}
	f.r.t.Logf("%s worker %s", how, victim.name)
	f.spawn()
}

// fleetSample is the median RSS and goroutine count (besides kept-alive
// HTTP connections) of the live workers at one time.
type fleetSample struct {
	at              time.Duration
	rss, goroutines uint64
	each            samples
}

func (s fleetSample) String() string {
	out := fmt.Sprintf("median RSS %d MiB, %d goroutines besides HTTP connections", s.rss>>20, s.goroutines)
	if len(s.each) > 0 {
		out += fmt.Sprintf("; each RSS / heap / goroutines (HTTP): %s", s.each)
	}
	return out
}

func (f *churnFleet) sample(at time.Duration) fleetSample {
	f.mu.Lock()
	procs := slices.Clone(f.procs)
	f.mu.Unlock()
	s := fleetSample{at: at, each: sampleAll(procs)}
	var rss, gs []uint64
	for _, x := range s.each {
		if x.Goroutines > 0 { // it has written figures
			rss, gs = append(rss, x.RSS), append(gs, uint64(x.other()))
		}
	}
	s.rss, s.goroutines = median(rss), median(gs)
	return s
}

// between is the median of the samples taken in [from, to).
func between(samples []fleetSample, from, to time.Duration) fleetSample {
	var rss, gs []uint64
	for _, s := range samples {
		if s.at >= from && s.at < to && s.rss > 0 {
			rss, gs = append(rss, s.rss), append(gs, s.goroutines)
		}
	}
	return fleetSample{at: from, rss: median(rss), goroutines: median(gs)}
}

func median(xs []uint64) uint64 {
	if len(xs) == 0 {
		return 0
	}
	xs = slices.Clone(xs)
	slices.Sort(xs)
	return xs[len(xs)/2]
}

// generator submits jobs for every tenant at share of its limit, each on a
// device of its own, until stopped.
type generator struct {
	quit chan struct{} // closed by stop
	done chan struct{} // closed when the last publish has ended
	mu   sync.Mutex
	jobs []wire.Job
}

func startGenerator(t *testing.T, r *rig, tenants []string, share float64) *generator {
	g := &generator{quit: make(chan struct{}), done: make(chan struct{})}
	perSecond := share * float64(len(tenants)*churnRate.N) / churnRate.Per.Seconds()
	go func() {
		defer close(g.done)
		tick := time.NewTicker(time.Duration(float64(time.Second) / perSecond))
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-g.quit:
				return
			case <-tick.C:
			}
			j := wire.Job{ID: fmt.Sprintf("churn-%07d", i), TenantID: tenants[i%len(tenants)], ManagedDeviceID: testsystem.DeviceN(i)}
			g.publish(t, r, j)
		}
	}()
	return g
}

// publish stores j, retrying until JetStream acknowledges it (a node may
// be restarting), and records it as accepted. A publish under way is
// finished even when the generator stops: one cut short might have been
// stored without being counted.
func (g *generator) publish(t *testing.T, r *rig, j wire.Job) {
	data, err := json.Marshal(j)
	if err != nil {
		t.Error(err)
		return
	}
	for {
		m := nats.NewMsg(r.names.Jobs("soak"))
		m.Data = data
		m.Header.Set(jetstream.MsgIDHeader, j.ID)
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		_, err := r.js.PublishMsg(ctx, m)
		cancel()
		if err == nil {
			g.mu.Lock()
			g.jobs = append(g.jobs, j)
			g.mu.Unlock()
			return
		}
		if t.Context().Err() != nil {
			return
		}
	}
}

func (g *generator) submitted() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.jobs)
}

// stop ends the generator and returns the jobs it got acknowledged.
func (g *generator) stop() []wire.Job {
	close(g.quit)
	<-g.done
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.jobs)
}
