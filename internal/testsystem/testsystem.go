// Package testsystem starts a whole recoverpasscode system inside a test: a
// real nats-server with the streams set up, the Graph and Entra ID double
// over TLS, and any number of workers running the production code, plus
// helpers to submit jobs and read results, dead letters and state.
package testsystem

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/recoverpasscode/recoverpasscode/devserver"
	"github.com/recoverpasscode/recoverpasscode/devserver/devservertest"
	"github.com/recoverpasscode/recoverpasscode/graph/graphsim"
	"github.com/recoverpasscode/recoverpasscode/queue"
	"github.com/recoverpasscode/recoverpasscode/ratelimit"
	"github.com/recoverpasscode/recoverpasscode/service"
	"github.com/recoverpasscode/recoverpasscode/wire"
)

// The system's directory: two tenants, one app registration, a device.
const (
	Tenant      = "33333333-3333-4333-8333-333333333333"
	OtherTenant = "44444444-4444-4444-8444-444444444444"
	Client      = "55555555-5555-4555-8555-555555555555"
	Secret      = "test-secret-value-0123456789"
	Device      = "2d6a3d0e-8f5c-4d7a-9b1e-0b2f3c4d5e6f"
)

// DeviceN is the n-th of many distinct device GUIDs.
func DeviceN(n int) string { return fmt.Sprintf("2d6a3d0e-8f5c-4d7a-9b1e-%012d", n) }

// System is a real NATS server and a Graph and Entra ID double, with the
// streams set up, for workers started by the test. Its methods fail the
// test on error and are safe for concurrent use.
type System struct {
	t     testing.TB
	NS    *devserver.Server
	GS    *graphsim.Server
	NC    *nats.Conn
	JS    jetstream.JetStream
	Names wire.Names
}

// Start starts a system that ends with the test.
func Start(t testing.TB, simCfg graphsim.Config) *System {
	t.Helper()
	return StartConfig(t, simCfg, devserver.Config{})
}

// StartConfig starts a system as Start does, on a server configured by
// dev (e.g. its users, for a component run with least privilege); the
// system's own connection and its workers connect without credentials, as
// dev.NoAuthUser.
func StartConfig(t testing.TB, simCfg graphsim.Config, dev devserver.Config) *System {
	t.Helper()
	ns := devservertest.StartConfig(t, dev)
	gs := graphsim.New(simCfg)
	t.Cleanup(gs.Close)
	gs.AddTenant(Tenant)
	gs.AddTenant(OtherTenant)
	gs.AddApp(Client, Secret)
	nc, err := nats.Connect(ns.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	s := &System{t: t, NS: ns, GS: gs, NC: nc, JS: js}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := (queue.Setup{}).Ensure(ctx, js); err != nil {
		t.Fatal(err)
	}
	return s
}

// Config is a worker configuration pointing at the system, with short
// leases and ack waits so that takeovers happen within a test.
func (s *System) Config(name string) service.Config {
	c := service.Config{
		Prefix:         wire.DefaultPrefix,
		Replicas:       1,
		Tenants:        []string{Tenant, OtherTenant},
		Rate:           ratelimit.Rate{N: 200, Per: 20 * time.Second},
		Concurrency:    8,
		KeysTTL:        time.Hour,
		Lease:          5 * time.Second,
		AttemptTimeout: 2 * time.Second,
		MaxAttempts:    5,
		DrainTimeout:   5 * time.Second,
		AckWait:        3 * time.Second,
		Name:           name,
		LogFormat:      "json",
		LogLevel:       "debug",
		HTTPClient:     s.GS.Client(),
	}
	c.NATS.URL = s.NS.URL()
	c.GraphURL = s.GS.GraphURL()
	c.Credential.TenantID = Tenant
	c.Credential.ClientID = Client
	c.Credential.ClientSecret = Secret
	c.Credential.AuthorityHost = s.GS.AuthorityHost()
	c.Credential.GraphBaseURL = s.GS.GraphURL()
	return c
}

// StartWorker runs a worker in process until the test ends; its log is
// kept in the returned buffer.
func (s *System) StartWorker(cfg service.Config) *Buffer {
	s.t.Helper()
	return RunWorker(s.t, cfg, 15*time.Second)
}

// Publish submits raw job data on a source's subject with a message id
// ("" for none).
func (s *System) Publish(source, msgID string, data []byte) {
	s.t.Helper()
	m := nats.NewMsg(s.Names.Jobs(source))
	m.Data = data
	if msgID != "" {
		m.Header.Set(jetstream.MsgIDHeader, msgID)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := s.JS.PublishMsg(ctx, m); err != nil {
		s.t.Fatalf("publish: %v", err)
	}
}

// Submit publishes a job with its id as message id.
func (s *System) Submit(source string, j wire.Job) {
	s.t.Helper()
	data, err := json.Marshal(j)
	if err != nil {
		s.t.Fatal(err)
	}
	s.Publish(source, j.ID, data)
}

// Results reads stored results matching filter ("" for all) from the
// results stream until n have arrived, keyed by job id; it fails the test
// after timeout or on a second result for one job.
func (s *System) Results(filter string, n int, timeout time.Duration) map[string]wire.Result {
	s.t.Helper()
	if filter == "" {
		filter = s.Names.ResultsWildcard()
	}
	return ReadStream(s.t, s.JS, s.Names.ResultsStream(), filter, n, timeout, func(data []byte) (string, wire.Result) {
		var r wire.Result
		if err := json.Unmarshal(data, &r); err != nil {
			s.t.Fatalf("result is not JSON: %v: %s", err, data)
		}
		return r.JobID, r
	})
}

// DeadLetters reads n dead letters, keyed by job id.
func (s *System) DeadLetters(n int, timeout time.Duration) map[string]wire.DeadLetter {
	s.t.Helper()
	return ReadStream(s.t, s.JS, s.Names.DLQStream(), s.Names.DLQWildcard(), n, timeout, func(data []byte) (string, wire.DeadLetter) {
		var d wire.DeadLetter
		if err := json.Unmarshal(data, &d); err != nil {
			s.t.Fatalf("dead letter is not JSON: %v", err)
		}
		return d.JobID, d
	})
}

// ReadStream collects n messages of a stream matching filter through an
// ordered consumer, keyed by decode's id; it fails the test after timeout
// or on a second message for one id.
func ReadStream[T any](t testing.TB, js jetstream.JetStream, stream, filter string, n int, timeout time.Duration, decode func([]byte) (string, T)) map[string]T {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cons, err := js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{FilterSubjects: []string{filter}})
	if err != nil {
		t.Fatal(err)
	}
	// One streaming iterator, not a fetch per message: reading 10,000
	// results must take seconds, not minutes.
	it, err := cons.Messages()
	if err != nil {
		t.Fatal(err)
	}
	defer it.Stop()
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	out := make(map[string]T)
	for len(out) < n {
		msg, err := it.Next()
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

// Buffer is an io.Writer safe for concurrent use, for captured logs.
type Buffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

var _ io.Writer = (*Buffer)(nil)

// AssertJobsStreamEmpty waits for every job to be acknowledged or
// terminated: the work queue then holds nothing.
func (s *System) AssertJobsStreamEmpty() {
	t := s.t
	t.Helper()
	var left uint64
	ok := Eventually(10*time.Second, func() bool {
		left = s.PendingJobs()
		return left == 0
	})
	if !ok {
		t.Errorf("%d jobs left in the work queue", left)
	}
}

// Eventually checks cond every 20ms until it holds or timeout passes.
func Eventually(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Keys lists a map's keys, for failure messages.
func Keys[T any](m map[string]T) string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return fmt.Sprint(out)
}

// PendingJobs is the number of jobs in the work queue.
func (s *System) PendingJobs() uint64 {
	s.t.Helper()
	stream, err := s.JS.Stream(s.t.Context(), s.Names.JobsStream())
	if err != nil {
		s.t.Fatal(err)
	}
	info, err := stream.Info(s.t.Context())
	if err != nil {
		s.t.Fatal(err)
	}
	return info.State.Msgs
}

// FreeAddr returns a loopback address with a port free at the time of the
// call, for a worker's HTTP server.
func FreeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// WaitReadyz polls a worker's /readyz until it answers want, and returns
// the last status and body.
func WaitReadyz(t testing.TB, addr string, want int, timeout time.Duration) (int, string) {
	t.Helper()
	var status int
	var body string
	ok := Eventually(timeout, func() bool {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		status, body = resp.StatusCode, string(b)
		return status == want
	})
	if !ok {
		t.Fatalf("/readyz answered %d %q, want %d", status, body, want)
	}
	return status, body
}
