package reliability_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/recoverpasscode/recoverpasscode/graph/graphsim"
	"github.com/recoverpasscode/recoverpasscode/idempotency"
	"github.com/recoverpasscode/recoverpasscode/internal/testsystem"
	"github.com/recoverpasscode/recoverpasscode/queue"
	"github.com/recoverpasscode/recoverpasscode/ratelimit"
	"github.com/recoverpasscode/recoverpasscode/reliability"
	"github.com/recoverpasscode/recoverpasscode/service"
	"github.com/recoverpasscode/recoverpasscode/wire"
)

// rig is a system under fault: NATS (one server or a cluster, started by
// the test so that it can stop it), the Graph and Entra ID double, and a
// client connection that survives the faults.
type rig struct {
	t        *testing.T
	gs       *graphsim.Server
	url      string // NATS_URL: one or more servers, comma-separated
	replicas int
	nc       *nats.Conn
	js       jetstream.JetStream
	names    wire.Names
	workers  []*workerLogs
	// readyWithin, when set, replaces the minute a worker process is given
	// to answer /readyz.
	readyWithin time.Duration
}

// workerLogs is one worker's log, shown when the test fails.
type workerLogs struct {
	name string
	logs *testsystem.Buffer
}

// newRig starts the Graph double and connects to NATS at url, creating the
// streams with the given replicas once the servers can. Graph's limits are
// off unless sim sets them: the workers run unlimited, and these tests are
// about faults, not pacing.
func newRig(t *testing.T, sim graphsim.Config, url string, replicas int) *rig {
	t.Helper()
	if sim.Limit == 0 {
		sim.Limit = -1
	}
	gs := graphsim.New(sim)
	t.Cleanup(gs.Close)
	gs.AddTenant(testsystem.Tenant)
	gs.AddTenant(testsystem.OtherTenant)
	gs.AddApp(testsystem.Client, testsystem.Secret)
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond), nats.RetryOnFailedConnect(true))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{t: t, gs: gs, url: url, replicas: replicas, nc: nc, js: js}
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	// The buckets too, for the same reason workers start one at a time
	// (see waitReady).
	buckets := []jetstream.KeyValueConfig{
		idempotency.BucketConfig(r.names.KeysBucket(), time.Hour, replicas),
		ratelimit.BucketConfig(r.names.LimitsBucket(), replicas),
	}
	testsystem.Retry(ctx, r.t, "set up the streams", func(ctx context.Context) error {
		_, err := queue.Setup{Replicas: replicas, AckWait: 3 * time.Second}.Ensure(ctx, js, buckets...)
		return err
	})
	// A failed test shows the end of each worker's log;
	// RELIABILITY_LOGS=all shows every log whole, failed or not.
	t.Cleanup(func() {
		all := os.Getenv("RELIABILITY_LOGS") == "all"
		if !t.Failed() && !all {
			return
		}
		for _, w := range r.workers {
			if all {
				t.Logf("worker %s, its log:\n%s", w.name, w.logs.String())
				continue
			}
			t.Logf("worker %s, last lines of its log:\n%s", w.name, tail(w.logs.String(), 60))
		}
	})
	return r
}

// config is a worker configuration for the rig: short leases, ack waits and
// attempt deadlines so that takeovers and retries happen within a test, and
// more attempts than production so that a 30% storm cannot exhaust them.
func (r *rig) config(name string) service.Config {
	c := service.Config{
		Prefix:         wire.DefaultPrefix,
		Replicas:       r.replicas,
		Tenants:        []string{testsystem.Tenant, testsystem.OtherTenant},
		Rate:           ratelimit.Unlimited,
		Concurrency:    8,
		KeysTTL:        time.Hour,
		Lease:          3 * time.Second,
		AttemptTimeout: time.Second,
		MaxAttempts:    15,
		DrainTimeout:   15 * time.Second, // above the worker's 10s publish timeout
		AckWait:        3 * time.Second,
		Name:           name,
		LogFormat:      "json",
		LogLevel:       "info",
		HTTPClient:     r.gs.Client(),
	}
	c.NATS.URL = r.url
	c.GraphURL = r.gs.GraphURL()
	c.Credential.TenantID = testsystem.Tenant
	c.Credential.ClientID = testsystem.Client
	c.Credential.ClientSecret = testsystem.Secret
	c.Credential.AuthorityHost = r.gs.AuthorityHost()
	c.Credential.GraphBaseURL = r.gs.GraphURL()
	return c
}

// startWorker runs a worker in this process, on its own NATS connection,
// until the test ends, and returns once it is ready; a soft stop that fails
// (a drain that times out) fails the test.
func (r *rig) startWorker(cfg service.Config) {
	r.t.Helper()
	cfg.HTTPAddr = testsystem.FreeAddr(r.t)
	logs := testsystem.RunWorker(r.t, cfg, 30*time.Second)
	r.workers = append(r.workers, &workerLogs{name: cfg.Name, logs: logs})
	waitReady(r.t, cfg.HTTPAddr)
}

// waitReady waits until the worker serving addr answers /readyz with 200.
// Workers are started one at a time: two setting up the same R3 stream at
// once can both hang until their setup attempt times out
// (nats-io/nats.go#949), leaving a fault test with one worker.
func waitReady(t *testing.T, addr string) {
	t.Helper()
	testsystem.WaitReadyz(t, addr, 200, time.Minute)
}

// batch makes n jobs named prefix-i, each on its own device unless every
// dupEvery-th job re-uses the previous job's key and device (0: never), and
// what each must end as.
func batch(prefix string, first, n, dupEvery int) ([]wire.Job, []reliability.Expected) {
	var jobs []wire.Job
	var want []reliability.Expected
	for i := first; i < first+n; i++ {
		j := wire.Job{ID: fmt.Sprintf("%s-%05d", prefix, i), ManagedDeviceID: testsystem.DeviceN(i), Ticket: "INC" + fmt.Sprint(i)}
		if dupEvery > 0 && i > first && i%dupEvery == 0 {
			prev := jobs[len(jobs)-1]
			j.IdempotencyKey = prev.ID
			j.ManagedDeviceID = prev.ManagedDeviceID
		}
		jobs = append(jobs, j)
		want = append(want, reliability.Expected{JobID: j.ID, Key: j.IdempotencyKey, Device: j.ManagedDeviceID})
	}
	return jobs, want
}

// submit publishes jobs with their ids as message ids, retrying each until
// JetStream acknowledges it: a retried publish that was stored already is
// dropped by the stream's duplicate window, as a careful publisher expects.
func (r *rig) submit(ctx context.Context, source string, jobs []wire.Job) {
	r.t.Helper()
	for _, j := range jobs {
		data, err := json.Marshal(j)
		if err != nil {
			r.t.Fatal(err)
		}
		r.publish(ctx, source, j.ID, data)
	}
}

// publish stores one raw job message, retrying until it is acknowledged,
// and returns its stream sequence.
func (r *rig) publish(ctx context.Context, source, msgID string, data []byte) uint64 {
	r.t.Helper()
	var seq uint64
	testsystem.Retry(ctx, r.t, "submit job "+msgID, func(ctx context.Context) error {
		m := nats.NewMsg(r.names.Jobs(source))
		m.Data = data
		if msgID != "" {
			m.Header.Set(jetstream.MsgIDHeader, msgID)
		}
		ack, err := r.js.PublishMsg(ctx, m)
		if err == nil {
			seq = ack.Sequence
		}
		return err
	})
	return seq
}

// derivedID is the id a worker gives the job stored at seq when neither
// the job nor its message names a usable one.
func (r *rig) derivedID(seq uint64) string {
	r.t.Helper()
	s, err := r.js.Stream(r.t.Context(), r.names.JobsStream())
	if err != nil {
		r.t.Fatal(err)
	}
	msg, err := s.GetMsg(r.t.Context(), seq)
	if err != nil {
		r.t.Fatalf("job at sequence %d: %v", seq, err)
	}
	return wire.Meta{Stream: r.names.JobsStream(), Sequence: seq, Timestamp: msg.Time}.DerivedID()
}

// settle waits for the queue to drain, then checks every invariant and
// reports the figures.
func (r *rig) settle(want []reliability.Expected, timeout time.Duration) reliability.Report {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(r.t.Context(), timeout)
	defer cancel()
	if err := reliability.Settle(ctx, r.js, r.names); err != nil {
		r.t.Errorf("the queue did not drain within %s: %v", timeout, err)
	}
	// A cluster may still be moving a leader back when the queue has
	// drained; a read that finds no responder is tried again.
	var obs reliability.Observed
	var err error
	for try := 0; try < 5; try++ {
		cctx, ccancel := context.WithTimeout(r.t.Context(), time.Minute)
		obs, err = reliability.Collect(cctx, r.js, r.names, r.gs)
		ccancel()
		if err == nil {
			break
		}
		<-time.After(time.Second)
	}
	if err != nil {
		r.t.Fatal(err)
	}
	rep := reliability.Check(want, obs)
	r.t.Logf("figures: %s", rep)
	if err := rep.Err(); err != nil {
		r.t.Errorf("invariants violated:\n%v", err)
	}
	return rep
}

// waitCalls waits until Graph has decided at least n calls.
func (r *rig) waitCalls(ctx context.Context, n int) {
	r.t.Helper()
	if err := r.gs.WaitCalls(ctx, n); err != nil {
		r.t.Fatalf("waiting for %d Graph calls (%d so far): %v", n, len(r.gs.Calls()), err)
	}
}

// checkResultHeaders fails the test unless every stored result carries
// exactly one header, its Nats-Msg-Id, naming its own job: nothing a job
// holds may reach a header.
func (r *rig) checkResultHeaders() {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(r.t.Context(), 30*time.Second)
	defer cancel()
	s, err := r.js.Stream(ctx, r.names.ResultsStream())
	if err != nil {
		r.t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		r.t.Fatal(err)
	}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		msg, err := s.GetMsg(ctx, seq)
		if err != nil {
			r.t.Fatalf("result %d: %v", seq, err)
		}
		var res wire.Result
		if err := json.Unmarshal(msg.Data, &res); err != nil {
			r.t.Fatalf("result %d: %v", seq, err)
		}
		if len(msg.Header) != 1 || msg.Header.Get(jetstream.MsgIDHeader) != res.JobID+"/result" {
			r.t.Errorf("result of job %q on %s carries headers %q", res.JobID, msg.Subject, msg.Header)
		}
	}
}

// jobsLeft returns the number of jobs in the jobs stream.
func (r *rig) jobsLeft() uint64 {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(r.t.Context(), 30*time.Second)
	defer cancel()
	var left uint64
	testsystem.Retry(ctx, r.t, "read the jobs stream", func(ctx context.Context) error {
		s, err := r.js.Stream(ctx, r.names.JobsStream())
		if err != nil {
			return err
		}
		info, err := s.Info(ctx)
		if err != nil {
			return err
		}
		left = info.State.Msgs
		return nil
	})
	return left
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
