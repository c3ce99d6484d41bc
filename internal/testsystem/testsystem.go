package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/recoverpasscode/recoverpasscode/devserver"
	"github.com/recoverpasscode/recoverpasscode/graph/graphsim"
	"github.com/recoverpasscode/recoverpasscode/job"
	"github.com/recoverpasscode/recoverpasscode/queue"
	"github.com/recoverpasscode/recoverpasscode/ratelimit"
	"github.com/recoverpasscode/recoverpasscode/worker"
)

const (
	testTenant  = "33333333-3333-4333-8333-333333333333"
	otherTenant = "44444444-4444-4444-8444-444444444444"
	testClient  = "55555555-5555-4555-8555-555555555555"
	testSecret  = "test-secret-value-0123456789"
	testDevice  = "2d6a3d0e-8f5c-4d7a-9b1e-0b2f3c4d5e6f"
)

// system is a real NATS server and a Graph and Entra ID double, with the
// streams set up, for workers started by the test.
type system struct {
	t     *testing.T
	ns    *devserver.Server
	gs    *graphsim.Server
	nc    *nats.Conn
	js    jetstream.JetStream
	names queue.Names
}

func startSystem(t *testing.T, simCfg graphsim.Config) *system {
	t.Helper()
	ns := devserver.StartForTest(t)
	gs := graphsim.New(simCfg)
	t.Cleanup(gs.Close)
	gs.AddTenant(testTenant)
	gs.AddTenant(otherTenant)
	gs.AddApp(testClient, testSecret)
	nc, err := nats.Connect(ns.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	s := &system{t: t, ns: ns, gs: gs, nc: nc, js: js}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := (queue.Setup{}).Ensure(ctx, js); err != nil {
		t.Fatal(err)
	}
	return s
}

// config is a worker configuration pointing at the system.
func (s *system) config(name string) *config {
	c := &config{
		Prefix:         queue.DefaultPrefix,
		Replicas:       1,
		Tenants:        []string{testTenant, otherTenant},
		Rate:           ratelimit.Rate{N: 200, Per: 20 * time.Second},
		Concurrency:    8,
		KeysTTL:        time.Hour,
		Lease:          5 * time.Second,
		AttemptTimeout: 2 * time.Second,
		MaxAttempts:    5,
		DrainTimeout:   5 * time.Second,
		Name:           name,
		LogFormat:      "json",
		LogLevel:       "debug",
		httpClient:     s.gs.Client(),
	}
	c.NATS.URL = s.ns.URL()
	c.GraphURL = s.gs.GraphURL()
	c.Credential.TenantID = testTenant
	c.Credential.ClientID = testClient
	c.Credential.ClientSecret = testSecret
	c.Credential.AuthorityHost = s.gs.AuthorityHost()
	c.Credential.GraphBaseURL = s.gs.GraphURL()
	return c
}

// startWorker runs a worker until the test ends; its log is kept in the
// returned buffer.
func (s *system) startWorker(cfg *config) *syncBuffer {
	s.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	logs := &syncBuffer{}
	done := make(chan error, 1)
	go func() { done <- run(ctx, ctx, cfg, logs) }()
	s.t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				s.t.Errorf("worker %s: %v", cfg.Name, err)
			}
		case <-time.After(15 * time.Second):
			s.t.Errorf("worker %s did not stop", cfg.Name)
		}
	})
	return logs
}

// publish submits raw job data on a source's subject with a message id.
func (s *system) publish(source, msgID string, data []byte) {
	s.t.Helper()
	m := nats.NewMsg(s.names.Jobs(source))
	m.Data = data
	if msgID != "" {
		m.Header.Set(jetstream.MsgIDHeader, msgID)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := s.js.PublishMsg(ctx, m); err != nil {
		s.t.Fatalf("publish: %v", err)
	}
}

// submit publishes a job with its id as message id.
func (s *system) submit(source string, j job.Job) {
	s.t.Helper()
	data, err := json.Marshal(j)
	if err != nil {
		s.t.Fatal(err)
	}
	s.publish(source, j.ID, data)
}

// results reads stored results from the results stream until n have
// arrived, keyed by job id; it fails the test after timeout.
func (s *system) results(filter string, n int, timeout time.Duration) map[string]job.Result {
	s.t.Helper()
	if filter == "" {
		filter = s.names.ResultsWildcard()
	}
	return readStream(s.t, s.js, s.names.ResultsStream(), filter, n, timeout, func(data []byte) (string, job.Result) {
		var r job.Result
		if err := json.Unmarshal(data, &r); err != nil {
			s.t.Fatalf("result is not JSON: %v: %s", err, data)
		}
		return r.JobID, r
	})
}

// deadLetters reads n dead letters.
func (s *system) deadLetters(n int, timeout time.Duration) map[string]worker.DeadLetter {
	s.t.Helper()
	return readStream(s.t, s.js, s.names.DLQStream(), s.names.DLQWildcard(), n, timeout, func(data []byte) (string, worker.DeadLetter) {
		var d worker.DeadLetter
		if err := json.Unmarshal(data, &d); err != nil {
			s.t.Fatalf("dead letter is not JSON: %v", err)
		}
		return d.JobID, d
	})
}

// readStream collects n messages of a stream through an ordered consumer.
func readStream[T any](t *testing.T, js jetstream.JetStream, stream, filter string, n int, timeout time.Duration, decode func([]byte) (string, T)) map[string]T {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cons, err := js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{FilterSubjects: []string{filter}})
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[string]T)
	for len(out) < n {
		msg, err := cons.Next(jetstream.FetchMaxWait(time.Until(deadline(ctx))))
		if err != nil {
			t.Fatalf("%s: %d of %d messages after %s: %v", stream, len(out), n, timeout, err)
		}
		id, v := decode(msg.Data())
		if _, dup := out[id]; dup {
			t.Fatalf("%s: two messages for job %s", stream, id)
		}
		out[id] = v
	}
	return out
}

func deadline(ctx context.Context) time.Time {
	d, _ := ctx.Deadline()
	return d
}

// syncBuffer is an io.Writer safe for concurrent use, for captured logs.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

var _ io.Writer = (*syncBuffer)(nil)
