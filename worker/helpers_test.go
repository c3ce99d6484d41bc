package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/recoverpasscode/recoverpasscode/devserver"
	"github.com/recoverpasscode/recoverpasscode/devserver/devservertest"
	"github.com/recoverpasscode/recoverpasscode/job"
	"github.com/recoverpasscode/recoverpasscode/metrics"
	"github.com/recoverpasscode/recoverpasscode/queue"
	"github.com/recoverpasscode/recoverpasscode/wire"
)

// rig is a nats-server with the streams and the jobs consumer set up, and
// a connection to it.
type rig struct {
	srv   *devserver.Server
	nc    *nats.Conn
	js    jetstream.JetStream
	cons  jetstream.Consumer
	names wire.Names
}

// ackWait is the jobs consumer's ack wait in these tests: long enough that
// a redelivery within a few seconds can only come from a nak.
const ackWait = 20 * time.Second

func newRig(t *testing.T) *rig {
	t.Helper()
	r := &rig{srv: devservertest.Start(t)}
	nc, err := nats.Connect(r.srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	r.nc = nc
	if r.js, err = jetstream.New(nc); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if r.cons, err = (queue.Setup{Names: r.names, AckWait: ackWait}).Ensure(ctx, r.js); err != nil {
		t.Fatal(err)
	}
	return r
}

// spec is what the fake handler reads from a job message: how to answer.
type spec struct {
	ID string `json:"id"`
	// Do is ack, fail (Ack with a dead letter), term (Term with a dead
	// letter) or retry (Retry with a delay on the first delivery, then ack).
	Do      string `json:"do"`
	Block   bool   `json:"block,omitempty"` // wait for release (or the end of ctx) first
	ReplyTo string `json:"replyTo,omitempty"`
}

// publish stores one job per spec on the jobs subject of source.
func (r *rig) publish(t *testing.T, source string, specs ...spec) {
	t.Helper()
	for _, s := range specs {
		data, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		m := nats.NewMsg(r.names.Jobs(source))
		m.Data = data
		m.Header.Set(jetstream.MsgIDHeader, fmt.Sprintf("%s.%d", s.ID, published.Add(1)))
		if _, err := r.js.PublishMsg(t.Context(), m); err != nil {
			t.Fatal(err)
		}
	}
}

// published numbers the job messages, so that each has a Nats-Msg-Id of
// its own, even two messages of one job.
var published atomic.Int64

// retryDelay is the delay the fake handler asks for on a retry.
const retryDelay = 300 * time.Millisecond

// fakeHandler answers each job as its spec says and records what it saw.
type fakeHandler struct {
	release chan struct{} // one token lets one blocked job go on

	mu          sync.Mutex
	inFlight    int
	maxInFlight int
	started     []string               // job ids, in start order, one per delivery
	seen        map[string][]time.Time // when each job was delivered
	numDeliv    map[string][]uint64
	cancelled   int // blocked jobs whose ctx ended first
}

func newFakeHandler() *fakeHandler {
	return &fakeHandler{release: make(chan struct{}, 1000), seen: map[string][]time.Time{}, numDeliv: map[string][]uint64{}}
}

var _ Handler = (*fakeHandler)(nil)

func (h *fakeHandler) Handle(ctx context.Context, d job.Delivery) job.Outcome {
	var s spec
	if err := json.Unmarshal(d.Data, &s); err != nil {
		panic(err)
	}
	h.mu.Lock()
	h.inFlight++
	h.maxInFlight = max(h.maxInFlight, h.inFlight)
	h.started = append(h.started, s.ID)
	h.seen[s.ID] = append(h.seen[s.ID], time.Now())
	h.numDeliv[s.ID] = append(h.numDeliv[s.ID], d.NumDelivered)
	h.mu.Unlock()
	defer func() {
		h.mu.Lock()
		h.inFlight--
		h.mu.Unlock()
	}()
	if s.Block {
		select {
		case <-h.release:
		case <-ctx.Done():
			h.mu.Lock()
			h.cancelled++
			h.mu.Unlock()
			return job.Outcome{Disposition: job.Retry}
		}
	}
	res := &wire.Result{JobID: s.ID, IdempotencyKey: s.ID, Source: d.Meta.Source, Status: wire.Succeeded, Attempts: 1}
	out := job.Outcome{Disposition: job.Ack, Result: res, ReplyTo: s.ReplyTo}
	switch s.Do {
	case "fail":
		res.Status, res.Error = wire.Failed, "graph kept failing"
		out.DeadLetter = "failed: graph kept failing"
	case "term":
		res.Status, res.Error = wire.Rejected, "bad job"
		out.Disposition, out.DeadLetter = job.Term, "rejected: bad job"
	case "retry":
		if d.NumDelivered == 1 {
			return job.Outcome{Disposition: job.Retry, Delay: retryDelay}
		}
	case "nocreds":
		if d.NumDelivered == 1 {
			return job.Outcome{Disposition: job.Retry, CredentialsBroken: true}
		}
	}
	return out
}

// cancelledCount is the number of blocked jobs whose ctx ended first.
func (h *fakeHandler) cancelledCount() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.cancelled
}

// snapshot returns a copy of what the handler recorded.
func (h *fakeHandler) snapshot() (inFlight, maxInFlight int, started []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.inFlight, h.maxInFlight, append([]string(nil), h.started...)
}

// fakeObserver records what the loop reported.
type fakeObserver struct {
	mu          sync.Mutex
	finished    []string        // job ids, one per Finished
	dead        map[string]bool // job id: dead-lettered
	tokenErrors int
}

var _ Observer = (*fakeObserver)(nil)

func (o *fakeObserver) InFlight(int) {}

func (o *fakeObserver) TokenError() {
	o.mu.Lock()
	o.tokenErrors++
	o.mu.Unlock()
}

func (o *fakeObserver) Finished(res *wire.Result, deadLettered bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.dead == nil {
		o.dead = map[string]bool{}
	}
	o.finished = append(o.finished, res.JobID)
	o.dead[res.JobID] = deadLettered
}

// count is the number of Finished calls.
func (o *fakeObserver) count() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.finished)
}

// running is a Worker run in the background.
type running struct {
	w          *Worker
	stop, kill context.CancelFunc
	done       chan error
}

// start runs a worker over r with h and obs, configured by cfg's
// non-zero fields.
func (r *rig) start(t *testing.T, h Handler, obs Observer, cfg Config) *running {
	t.Helper()
	cfg.NC, cfg.JS, cfg.Consumer, cfg.Names = r.nc, r.js, r.cons, r.names
	cfg.Handler, cfg.Telemetry = h, obs
	cfg.Health = NewHealth(r.nc)
	if cfg.Probe == nil {
		cfg.Probe = func(context.Context, bool) error { return nil }
	}
	if cfg.FetchWait == 0 {
		cfg.FetchWait = 100 * time.Millisecond
	}
	cfg.Logger = zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)
	w, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	soft, stop := context.WithCancel(context.Background())
	hard, kill := context.WithCancel(context.Background())
	run := &running{w: w, stop: stop, kill: kill, done: make(chan error, 1)}
	go func() { run.done <- w.Run(soft, hard) }()
	t.Cleanup(func() {
		stop()
		kill()
		select {
		case <-run.done:
		case <-time.After(30 * time.Second):
			t.Errorf("Run did not return within 30s of a hard stop")
		}
	})
	return run
}

// wait returns Run's error, failing the test if it takes longer than d.
func (run *running) wait(t *testing.T, d time.Duration) error {
	t.Helper()
	select {
	case err := <-run.done:
		run.done <- err // for the cleanup
		return err
	case <-time.After(d):
		t.Fatalf("Run did not return within %s", d)
		return nil
	}
}

// eventually polls cond until it holds or d passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		<-tick.C
	}
}

// streamMsgs reads every message stored in stream.
func (r *rig) streamMsgs(t *testing.T, stream string) []*jetstream.RawStreamMsg {
	t.Helper()
	s, err := r.js.Stream(t.Context(), stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var out []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(t.Context(), seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
	}
	return out
}

// storedCount is the number of messages stream holds.
func (r *rig) storedCount(t *testing.T, stream string) uint64 {
	t.Helper()
	s, err := r.js.Stream(t.Context(), stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

// ackPending is the jobs consumer's count of delivered, unacknowledged jobs.
func (r *rig) ackPending(t *testing.T) int {
	t.Helper()
	info, err := r.cons.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return info.NumAckPending
}

// newMetrics returns metrics on a registry of their own, and a reader of
// one counter.
func newMetrics(t *testing.T) (*metrics.Metrics, func(name string) float64) {
	t.Helper()
	reg := prometheus.NewRegistry()
	m := metrics.New(reg)
	return m, func(name string) float64 {
		families, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range families {
			if f.GetName() == name {
				sum := 0.0
				for _, m := range f.GetMetric() {
					sum += m.GetCounter().GetValue()
				}
				return sum
			}
		}
		t.Fatalf("no metric %s", name)
		return 0
	}
}
