package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/recoverpasscode/recoverpasscode/gateway"
	"github.com/recoverpasscode/recoverpasscode/graph/graphsim"
	"github.com/recoverpasscode/recoverpasscode/wire"
)

// submitClients is how many clients submit at once, over HTTP and
// directly: the 64 concurrent clients.
const submitClients = 64

// submitRound is one pass over the submission measurements, back to back,
// each on a fresh stack: direct JetStream publishes, the floor (the two
// JetStream writes the gateway's contract requires of each submission,
// without HTTP), HTTP alone (the same clients against a server that does
// nothing) and HTTP submissions through a gateway process.
type submitRound struct {
	direct, floor, plain, http submitRun
}

// share is HTTP submissions over direct publishes.
func (rd submitRound) share() float64 {
	if rd.direct.perSec == 0 {
		return 0
	}
	return rd.http.perSec / rd.direct.perSec
}

// submitRun is what one submission measurement found.
type submitRun struct {
	jobs int
	// perSec is the steady rate, while 10% to 90% of the jobs completed.
	perSec float64
	// cpu is the gateway process's CPU time per job (none without HTTP);
	// serverCPU that of this process: nats-server, the Graph double and
	// the clients.
	cpu, serverCPU time.Duration
}

// gatewayFleet is one gateway process on the stack, serving source
// "bench" with the API key key.
func (b *bench) gatewayFleet(hash string) fleetSpec {
	return fleetSpec{
		name: "gateway",
		n:    1,
		cmd:  b.gatewayCmd,
		env: func(s *stack, _, httpAddr string) []string {
			return []string{
				"NATS_URL=" + s.url,
				"GATEWAY_HTTP_ADDR=" + httpAddr,
				"GATEWAY_SOURCES=" + source + "=" + hash,
				"AZURE_TENANT_ID=" + benchTenant,
				"RECOVER_LOG_FORMAT=json",
				"RECOVER_LOG_LEVEL=info",
				"RECOVER_PPROF=" + fmt.Sprint(b.cfg.ProfileDir != ""),
			}
		},
	}
}

// submissions runs one round of the submission measurements.
func (b *bench) submissions(ctx context.Context, i int) (submitRound, error) {
	var rd submitRound
	var err error
	n := b.cfg.Jobs
	b.logf("gateway round %d of %d: %d jobs each, %d concurrent clients", i+1, b.cfg.Rounds, n, submitClients)
	if rd.direct, err = b.submitDirect(ctx, n, false); err != nil {
		return rd, fmt.Errorf("direct publishes: %w", err)
	}
	if rd.floor, err = b.submitDirect(ctx, n, true); err != nil {
		return rd, fmt.Errorf("floor: %w", err)
	}
	if rd.plain, err = b.submitPlain(ctx, n); err != nil {
		return rd, fmt.Errorf("HTTP alone: %w", err)
	}
	if rd.http, err = b.submitHTTP(ctx, n, b.cfg.ProfileDir != "" && i == 0); err != nil {
		return rd, fmt.Errorf("HTTP submissions: %w", err)
	}
	b.logf("  direct %.0f/s, floor %.0f/s, HTTP alone %.0f/s, gateway %.0f/s: the gateway is %.0f%% of direct",
		rd.direct.perSec, rd.floor.perSec, rd.plain.perSec, rd.http.perSec, 100*rd.share())
	return rd, nil
}

// submitDirect publishes n jobs from submitClients goroutines, each
// waiting for its acknowledgement, as a NATS client submits; with record,
// each job's request record is created first, as the gateway does.
func (b *bench) submitDirect(ctx context.Context, n int, record bool) (submitRun, error) {
	run := submitRun{jobs: n}
	s, err := startStack(ctx, b.dir, graphsim.Config{Limit: -1})
	if err != nil {
		return run, err
	}
	defer s.close()
	kv, err := s.js.KeyValue(ctx, s.names.RequestsBucket())
	if err != nil {
		return run, err
	}
	self0 := selfCPU()
	run.perSec, err = concurrently(ctx, n, func(ctx context.Context, i int) error {
		if record {
			if _, err := kv.Create(ctx, source+"."+jobID(i), requestRecord(i)); err != nil {
				return fmt.Errorf("create the request record: %w", err)
			}
		}
		m, err := s.jobMsg(i)
		if err != nil {
			return err
		}
		_, err = s.js.PublishMsg(ctx, m, jetstream.WithExpectStream(s.names.JobsStream()))
		return err
	})
	if err != nil {
		return run, err
	}
	run.serverCPU = (selfCPU() - self0) / time.Duration(n)
	return run, s.checkStored(ctx, n)
}

// requestRecord is a request record of the gateway's size and shape.
func requestRecord(i int) []byte {
	data, _ := json.Marshal(map[string]any{
		"v": 1, "jobId": jobID(i), "source": source, "idempotencyKey": fmt.Sprintf("INC%07d", i),
		"fingerprint": fmt.Sprintf("%064x", i), "submittedAt": time.Now().UTC(),
		"tenantId": benchTenant, "managedDeviceId": deviceID(i), "ticket": fmt.Sprintf("INC%07d", i),
		"requestedBy": "helpdesk-agent@contoso.com",
	})
	return data
}

// submitHTTP submits n jobs through a gateway process from submitClients
// HTTP clients with keep-alive, each job with its own Idempotency-Key as a
// ticketing system sends it, each answered 202 once JetStream holds it.
// With profile, it also captures CPU profiles of the gateway and this process
// (see startProfiles).
func (b *bench) submitHTTP(ctx context.Context, n int, profile bool) (submitRun, error) {
	run := submitRun{jobs: n}
	s, err := startStack(ctx, b.dir, graphsim.Config{Limit: -1})
	if err != nil {
		return run, err
	}
	defer s.close()
	key, hash, err := gateway.NewAPIKey()
	if err != nil {
		return run, err
	}
	f, err := b.start(ctx, s, b.gatewayFleet(hash))
	if err != nil {
		return run, err
	}
	defer f.stop()
	url := "http://" + f.procs[0].httpAddr + "/v1/jobs"
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: submitClients}}
	defer client.CloseIdleConnections()
	var prof *profiles
	if profile {
		if prof, err = b.startProfiles(ctx, f, "gateway-submit", false); err != nil {
			return run, err
		}
	}
	if err := postAll(ctx, f, client, url, key, &run); err != nil {
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
	return run, s.checkStored(ctx, n)
}

// plainFleet is one plain HTTP server process (see plainHTTPMain).
func (b *bench) plainFleet() fleetSpec {
	return fleetSpec{
		name: "plain-http",
		n:    1,
		cmd:  b.selfCmd,
		env: func(_ *stack, _, httpAddr string) []string {
			return []string{roleEnv + "=" + rolePlainHTTP, "RECOVER_HTTP_ADDR=" + httpAddr}
		},
	}
}

// submitPlain posts n jobs, as submitHTTP does, to a server that answers
// 202 and does nothing else: what HTTP alone costs, with the same
// clients, the same bodies and keep-alive.
func (b *bench) submitPlain(ctx context.Context, n int) (submitRun, error) {
	run := submitRun{jobs: n}
	s, err := startStack(ctx, b.dir, graphsim.Config{Limit: -1})
	if err != nil {
		return run, err
	}
	defer s.close()
	f, err := b.start(ctx, s, b.plainFleet())
	if err != nil {
		return run, err
	}
	defer f.stop()
	url := "http://" + f.procs[0].httpAddr + "/v1/jobs"
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: submitClients}}
	defer client.CloseIdleConnections()
	if err := postAll(ctx, f, client, url, "not-checked", &run); err != nil {
		return run, err
	}
	f.stop()
	return run, f.check()
}

// postAll posts run.jobs jobs to url with key from submitClients clients,
// each to be answered 202, and fills in run's rate and the CPU per POST of
// f's processes and of this one.
func postAll(ctx context.Context, f *fleet, client *http.Client, url, key string, run *submitRun) error {
	cpu0, err := f.cpuTime()
	if err != nil {
		return err
	}
	self0 := selfCPU()
	run.perSec, err = concurrently(ctx, run.jobs, func(ctx context.Context, i int) error {
		status, body, err := post(ctx, client, url, key, i, "")
		if err == nil && status != http.StatusAccepted {
			err = fmt.Errorf("POST: %d %s", status, body)
		}
		return err
	})
	if err != nil {
		return err
	}
	cpu1, err := f.cpuTime()
	if err != nil {
		return err
	}
	run.cpu = (cpu1 - cpu0) / time.Duration(run.jobs)
	run.serverCPU = (selfCPU() - self0) / time.Duration(run.jobs)
	return nil
}

// post submits job i to the gateway at url as source bench, with its
// Idempotency-Key and the Prefer header if any, and returns the answer.
func post(ctx context.Context, client *http.Client, url, key string, i int, prefer string) (int, []byte, error) {
	body, _ := json.Marshal(wire.Job{
		ManagedDeviceID: deviceID(i),
		RequestedBy:     "helpdesk-agent@contoso.com",
		Ticket:          fmt.Sprintf("INC%07d", i),
	})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", fmt.Sprintf("INC%07d", i))
	if prefer != "" {
		req.Header.Set("Prefer", prefer)
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body) // to the end, so that the connection is kept
	return resp.StatusCode, data, err
}

// concurrently runs op for 0…n-1 from submitClients goroutines, and
// returns the rate while the count of finished ops went from 10% to 90% of
// n: the steady state, without the start and the last stragglers.
func concurrently(ctx context.Context, n int, op func(ctx context.Context, i int) error) (float64, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	lo, hi := int64(n/10), int64(n*9/10)
	var next, done atomic.Int64
	var t0, t1 time.Time
	var mu sync.Mutex
	var firstErr error
	var wg sync.WaitGroup
	for range submitClients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				opCtx, opCancel := context.WithTimeout(ctx, 30*time.Second)
				err := op(opCtx, i)
				opCancel()
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = err
					cancel()
				}
				switch done.Add(1) {
				case lo:
					t0 = time.Now()
				case hi:
					t1 = time.Now()
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return 0, firstErr
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if !t1.After(t0) {
		return 0, errors.New("the submissions came too fast to time: submit more jobs")
	}
	return float64(hi-lo) / t1.Sub(t0).Seconds(), nil
}

// checkStored reports a jobs stream that does not hold exactly n jobs: a
// measurement is only valid when every submission was stored once.
func (s *stack) checkStored(ctx context.Context, n int) error {
	stream, err := s.js.Stream(ctx, s.names.JobsStream())
	if err != nil {
		return err
	}
	info, err := stream.Info(ctx)
	if err != nil {
		return err
	}
	if info.State.Msgs != uint64(n) {
		return fmt.Errorf("the jobs stream holds %d jobs after %d submissions", info.State.Msgs, n)
	}
	return nil
}

// gatewayLatency times single jobs through the gateway and one idle
// worker, one after the other: a POST with Prefer: wait=10 answered 200
// with the result, as a ticketing system waiting in one call sees it; then
// direct calls to the Graph double, to subtract what it takes.
func (b *bench) gatewayLatency(ctx context.Context) (latencyRun, error) {
	run := latencyRun{samples: b.cfg.LatencySamples}
	s, err := startStack(ctx, b.dir, graphsim.Config{Limit: -1})
	if err != nil {
		return run, err
	}
	defer s.close()
	workers, err := b.start(ctx, s, b.workerFleet(1, "unlimited"))
	if err != nil {
		return run, err
	}
	defer workers.stop()
	key, hash, err := gateway.NewAPIKey()
	if err != nil {
		return run, err
	}
	gw, err := b.start(ctx, s, b.gatewayFleet(hash))
	if err != nil {
		return run, err
	}
	defer gw.stop()
	url := "http://" + gw.procs[0].httpAddr + "/v1/jobs"
	client := &http.Client{Timeout: 30 * time.Second}
	defer client.CloseIdleConnections()
	var prof *profiles
	if b.cfg.ProfileDir != "" {
		if prof, err = b.startProfiles(ctx, gw, "gateway-wait", true); err != nil {
			return run, err
		}
	}
	for i := range warmup + run.samples {
		start := time.Now()
		status, body, err := post(ctx, client, url, key, i, "wait=10")
		if err != nil {
			return run, err
		}
		var res wire.Result
		if status != http.StatusOK || json.Unmarshal(body, &res) != nil || res.Status != wire.Succeeded {
			return run, fmt.Errorf("POST with Prefer: wait: %d %s", status, body)
		}
		if i >= warmup {
			run.e2e = append(run.e2e, time.Since(start))
		}
	}
	if prof != nil {
		if err := prof.wait(); err != nil {
			return run, err
		}
	}
	if run.graph, err = s.timeGraph(ctx, run.samples); err != nil {
		return run, err
	}
	workers.stop()
	gw.stop()
	if err := errors.Join(workers.check(), gw.check()); err != nil {
		return run, err
	}
	if err := s.checkClean(ctx, warmup+run.samples+warmup+run.samples); err != nil {
		return run, err
	}
	slices.Sort(run.e2e)
	slices.Sort(run.graph)
	b.logf("  POST with Prefer: wait p50 %s p99 %s; graph double p50 %s; overhead p50 %s p99 %s",
		ms(percentile(run.e2e, 50)), ms(percentile(run.e2e, 99)), ms(percentile(run.graph, 50)),
		ms(run.overhead(50)), ms(run.overhead(99)))
	return run, nil
}

// medianSubmitRound is the round whose HTTP share is the median (the lower
// middle of an even number).
func medianSubmitRound(rounds []submitRound) submitRound {
	if len(rounds) == 0 {
		return submitRound{}
	}
	sorted := slices.Clone(rounds)
	slices.SortFunc(sorted, func(a, b submitRound) int {
		switch {
		case a.share() < b.share():
			return -1
		case a.share() > b.share():
			return 1
		}
		return 0
	})
	return sorted[(len(sorted)-1)/2]
}

// gatewayCommand is how a gateway process is started: the built binary.
func gatewayCommand(bin string) func() *exec.Cmd {
	return func() *exec.Cmd { return exec.Command(bin) }
}
