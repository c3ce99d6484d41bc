package writeback_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/recoverpasscode/recoverpasscode/devserver"
	"github.com/recoverpasscode/recoverpasscode/devserver/devservertest"
	"github.com/recoverpasscode/recoverpasscode/queue"
	"github.com/recoverpasscode/recoverpasscode/wire"
	"github.com/recoverpasscode/recoverpasscode/writeback"
)

// harness is a real nats-server with the streams and buckets the workers
// create, into whose results stream a test publishes results as a worker
// would.
type harness struct {
	t     *testing.T
	ns    *devserver.Server
	nc    *nats.Conn
	js    jetstream.JetStream
	names wire.Names
	store *writeback.Store
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	ns := devservertest.Start(t)
	nc, js := connect(t, ns.URL())
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if _, err := (queue.Setup{}).Ensure(ctx, js); err != nil {
		t.Fatal(err)
	}
	store, err := writeback.OpenStore(ctx, js, wire.Names{})
	if err != nil {
		t.Fatal(err)
	}
	return &harness{t: t, ns: ns, nc: nc, js: js, store: store}
}

func connect(t *testing.T, url string) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(url, nats.MaxReconnects(-1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}

// publish stores r as the worker does: on <prefix>.results.<source>.<jobId>
// with Nats-Msg-Id <jobId>/result.
func (h *harness) publish(r wire.Result) {
	h.t.Helper()
	body, err := json.Marshal(r)
	if err != nil {
		h.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(h.t.Context(), 10*time.Second)
	defer cancel()
	if _, err := h.js.Publish(ctx, h.names.Result(r.Source, r.JobID), body, jetstream.WithMsgID(r.JobID+"/result")); err != nil {
		h.t.Fatal(err)
	}
}

// publishConfirmation stores c as the follower does: on
// <prefix>.confirmations.<source>.<jobId> with Nats-Msg-Id
// <jobId>/confirmation.
func (h *harness) publishConfirmation(c wire.Confirmation) {
	h.t.Helper()
	body, err := json.Marshal(c)
	if err != nil {
		h.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(h.t.Context(), 10*time.Second)
	defer cancel()
	if _, err := h.js.Publish(ctx, h.names.Confirmation(c.Source, c.JobID), body, jetstream.WithMsgID(c.JobID+"/confirmation")); err != nil {
		h.t.Fatal(err)
	}
}

// testConfig is a configuration with short timeouts and backoffs.
func testConfig(sources ...writeback.Source) writeback.Config {
	return writeback.Config{
		Sources:             sources,
		Timeout:             2 * time.Second,
		ClientErrorAttempts: 3,
		MinBackoff:          50 * time.Millisecond,
		MaxBackoff:          time.Second,
		AckWait:             5 * time.Second,
		FetchWait:           200 * time.Millisecond,
		SampleInterval:      100 * time.Millisecond,
		Logger:              zerolog.Nop(),
	}
}

// running is a Deliverer running in the test.
type running struct {
	*writeback.Deliverer
	cancel context.CancelFunc
	done   chan error
	reg    *prometheus.Registry
}

// start runs a Deliverer for cfg on js until stop or the test's end, and
// waits until it has set up.
func (h *harness) start(js jetstream.JetStream, cfg writeback.Config) *running {
	h.t.Helper()
	r := &running{done: make(chan error, 1), reg: prometheus.NewRegistry()}
	cfg.Registerer = r.reg
	d, err := writeback.New(js, cfg)
	if err != nil {
		h.t.Fatal(err)
	}
	r.Deliverer = d
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() { r.done <- d.Run(ctx) }()
	h.t.Cleanup(r.stop)
	select {
	case <-d.Started():
	case err := <-r.done:
		h.t.Fatalf("Run returned before starting: %v", err)
	case <-time.After(20 * time.Second):
		h.t.Fatal("the deliverer did not start within 20s")
	}
	return r
}

// stop stops the Deliverer and waits for Run to return.
func (r *running) stop() {
	r.cancel()
	if r.done != nil {
		if err := <-r.done; err != nil {
			panic(err)
		}
		r.done = nil
	}
}

// failures waits until the kept failed deliveries f selects are n, and
// returns them.
func (h *harness) failures(f writeback.Filter, n int) []writeback.Failure {
	h.t.Helper()
	var got []writeback.Failure
	h.eventually(func(ctx context.Context) bool {
		var err error
		got, err = h.store.Failures(ctx, f)
		if err != nil {
			h.t.Fatal(err)
		}
		return len(got) == n
	}, "%d failed deliveries for %+v", n, f)
	return got
}

// eventually waits until cond holds, checking every 20 ms for 30 s.
func (h *harness) eventually(cond func(ctx context.Context) bool, what string, args ...any) {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(h.t.Context(), 30*time.Second)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond(ctx) {
		select {
		case <-ctx.Done():
			h.t.Fatalf("waited 30s for "+what, args...)
		case <-tick.C:
		}
	}
}

// settled waits until the endpoint's consumer has nothing pending or
// unacknowledged: every result has been delivered or given up.
func (h *harness) settled(source, endpoint string) {
	h.t.Helper()
	h.eventually(func(ctx context.Context) bool {
		c, err := h.js.Consumer(ctx, h.names.ResultsStream(), "writeback_"+source+"_"+endpoint)
		if err != nil {
			return false
		}
		info, err := c.Info(ctx)
		return err == nil && info.NumPending == 0 && info.NumAckPending == 0
	}, "consumer of %s/%s to settle", source, endpoint)
}

// switchable is a handler a test can replace while it serves.
type switchable struct {
	mu sync.Mutex
	h  http.Handler
}

func (s *switchable) set(h http.Handler) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.h = h
}

func (s *switchable) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	h := s.h
	s.mu.Unlock()
	h.ServeHTTP(w, r)
}

// waitCtx is a context for waiting on a double.
func waitCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// must fails the test on err, naming what was waited for.
func must(t *testing.T, err error, what string) {
	t.Helper()
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("gave up waiting for %s", what)
		}
		t.Fatalf("%s: %v", what, err)
	}
}

// trusting is a TLS configuration trusting the given certificates.
func trusting(certs ...*x509.Certificate) *tls.Config {
	pool := x509.NewCertPool()
	for _, c := range certs {
		pool.AddCert(c)
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
}

// value is the value of the series of metric name with the source and
// endpoint labels and any further label name and value pairs; 0 when
// there is none.
func value(reg *prometheus.Registry, name, source, endpoint string, labels ...string) float64 {
	want := map[string]string{"source": source, "endpoint": endpoint}
	for i := 0; i+1 < len(labels); i += 2 {
		want[labels[i]] = labels[i+1]
	}
	families, err := reg.Gather()
	if err != nil {
		panic(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	series:
		for _, m := range f.GetMetric() {
			got := map[string]string{}
			for _, l := range m.GetLabel() {
				got[l.GetName()] = l.GetValue()
			}
			for k, v := range want {
				if got[k] != v {
					continue series
				}
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue()
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			case m.Histogram != nil:
				return float64(m.Histogram.GetSampleCount())
			}
		}
	}
	return 0
}

// consumerState describes an endpoint's consumer, for a failure message.
func (h *harness) consumerState(source, endpoint string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := h.js.Consumer(ctx, h.names.ResultsStream(), "writeback_"+source+"_"+endpoint)
	if err != nil {
		return err.Error()
	}
	info, err := c.Info(ctx)
	if err != nil {
		return err.Error()
	}
	return fmt.Sprintf("pending %d, ack pending %d, redelivered %d, waiting %d, ack floor %d, delivered %d", info.NumPending, info.NumAckPending, info.NumRedelivered, info.NumWaiting, info.AckFloor.Stream, info.Delivered.Stream)
}
