package job_test

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/recoverpasscode/recoverpasscode/devserver/devservertest"
	"github.com/recoverpasscode/recoverpasscode/graph"
	"github.com/recoverpasscode/recoverpasscode/graph/graphsim"
	"github.com/recoverpasscode/recoverpasscode/idempotency"
	"github.com/recoverpasscode/recoverpasscode/job"
	"github.com/recoverpasscode/recoverpasscode/metrics"
	"github.com/recoverpasscode/recoverpasscode/queue"
	"github.com/recoverpasscode/recoverpasscode/ratelimit"
	"github.com/recoverpasscode/recoverpasscode/wire"
	"github.com/recoverpasscode/recoverpasscode/worker"
)

// The directory the benchmark's Graph double knows.
const (
	benchTenant = "33333333-3333-4333-8333-333333333333"
	benchClient = "55555555-5555-4555-8555-555555555555"
	benchSecret = "bench-secret-value-0123456789"
	benchDevice = "2d6a3d0e-8f5c-4d7a-9b1e-0b2f3c4d5e6f"
	// benchServersEnv makes the test binary serve as the benchmark's
	// helper process (see TestHelperBenchServers).
	benchServersEnv = "JOB_BENCH_SERVERS"
)

// BenchmarkHandle measures what Handler.Handle costs one job with real
// parts, wired as service.Run wires them: the idempotency record in a
// JetStream KeyValue bucket, the shared limiter (unlimited, so nothing
// waits), a Graph call through real MSAL tokens and TLS to the Graph double
// at zero latency, and the worker's telemetry (metrics, and the Graph
// call's audit event published to JetStream). The nats-server and
// the double run in a helper process, so that -benchmem counts the
// handler's allocations and not the servers'. go run ./bench reports its
// allocs/op and B/op as the worker's allocations per job.
//
//   - new: a job with a new key: claim, mark calling, Graph, complete.
//   - replayed: a job whose key is done: answered from the record.
func BenchmarkHandle(b *testing.B) {
	srv := startBenchServers(b)
	h, store := newBenchHandler(b, srv)
	ctx := b.Context()
	// The testing package calls each sub-benchmark more than once, and
	// -count calls BenchmarkHandle again on the same buckets: every call
	// needs job ids and keys of its own.
	runs := 0
	prefix := func(what string) string {
		runs++
		return fmt.Sprintf("%s-%d-%d", what, time.Now().UnixNano(), runs)
	}
	b.Run("new", func(b *testing.B) {
		run := prefix("new")
		deliveries := make([]job.Delivery, b.N)
		for i := range deliveries {
			deliveries[i] = benchDelivery(fmt.Sprintf("%s-%d", run, i), uint64(i+1))
		}
		before := store.Stats().Ops()
		b.ReportAllocs()
		b.ResetTimer()
		for i := range b.N {
			mustSucceed(b, h.Handle(ctx, deliveries[i]), false)
		}
		b.StopTimer()
		b.ReportMetric(float64(store.Stats().Ops()-before)/float64(b.N), "kvops/op")
	})
	b.Run("replayed", func(b *testing.B) {
		key := prefix("replayed")
		mustSucceed(b, h.Handle(ctx, benchDelivery(key, 1)), false)
		deliveries := make([]job.Delivery, b.N)
		for i := range deliveries {
			id := fmt.Sprintf("%s-%d", key, i)
			deliveries[i] = benchDelivery(id, uint64(i+2))
			deliveries[i].Data = fmt.Appendf(nil, `{"id":%q,"idempotencyKey":%q,"managedDeviceId":%q}`, id, key, benchDevice)
		}
		before := store.Stats().Ops()
		b.ReportAllocs()
		b.ResetTimer()
		for i := range b.N {
			mustSucceed(b, h.Handle(ctx, deliveries[i]), true)
		}
		b.StopTimer()
		b.ReportMetric(float64(store.Stats().Ops()-before)/float64(b.N), "kvops/op")
	})
}

// benchDelivery is the first delivery of a job as a ticketing integration
// publishes it.
func benchDelivery(id string, seq uint64) job.Delivery {
	return job.Delivery{
		Data: fmt.Appendf(nil, `{"id":%q,"managedDeviceId":%q,"requestedBy":"helpdesk-agent@contoso.com","ticket":"INC0012345"}`, id, benchDevice),
		Meta: wire.Meta{
			Source: "bench", MsgID: id, Stream: "RECOVERPASSCODE_JOBS",
			Sequence: seq, Timestamp: time.Now(),
		},
		NumDelivered: 1,
		InProgress:   func() {},
	}
}

func mustSucceed(b *testing.B, out job.Outcome, replayed bool) {
	if out.Disposition != job.Ack || out.Result == nil || out.Result.Status != wire.Succeeded || out.Result.Replayed != replayed {
		b.Fatalf("outcome %+v, result %+v", out, out.Result)
	}
}

// benchServers is where the helper process serves NATS and the Graph
// double.
type benchServers struct {
	NATS      string `json:"nats"`
	Graph     string `json:"graph"`
	Authority string `json:"authority"`
	CA        []byte `json:"ca"`
}

// newBenchHandler wires a Handler as service.Run does, at the worker's
// production log level (info, so per-attempt debug lines cost nothing).
// The streams and buckets are those the worker sets up.
func newBenchHandler(b testing.TB, srv benchServers) (*job.Handler, *idempotency.Store) {
	return newBenchHandlerWith(b, srv, nil)
}

// newBenchHandlerWith is newBenchHandler with adjust, when not nil, given
// the configurations of the handler and of its idempotency store, and the
// keys bucket the store writes to, before they are used.
func newBenchHandlerWith(b testing.TB, srv benchServers, adjust func(*job.Config, *idempotency.Config, *jetstream.KeyValue)) (*job.Handler, *idempotency.Store) {
	ctx := b.Context()
	nc, err := nats.Connect(srv.NATS)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(nc.Close)
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096))
	if err != nil {
		b.Fatal(err)
	}
	names := wire.Names{}
	if _, err := (queue.Setup{Names: names}).Ensure(ctx, js,
		idempotency.BucketConfig(names.KeysBucket(), time.Hour, 1),
		ratelimit.BucketConfig(names.LimitsBucket(), 1)); err != nil {
		b.Fatal(err)
	}
	keys, err := js.KeyValue(ctx, names.KeysBucket())
	if err != nil {
		b.Fatal(err)
	}
	limits, err := js.KeyValue(ctx, names.LimitsBucket())
	if err != nil {
		b.Fatal(err)
	}
	log := zerolog.New(io.Discard).Level(zerolog.InfoLevel)
	limiter, err := ratelimit.New(ctx, limits, ratelimit.Config{App: benchClient, Rate: ratelimit.Unlimited, Owner: "bench", Logger: log})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = limiter.Close() })

	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(srv.CA) {
		b.Fatal("the helper's CA is not PEM")
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	hc := &http.Client{Transport: transport}
	cred, err := graph.NewCredential(graph.CredentialConfig{
		TenantID: benchTenant, ClientID: benchClient, ClientSecret: benchSecret,
		AuthorityHost: srv.Authority, GraphBaseURL: srv.Graph, HTTPClient: hc,
	})
	if err != nil {
		b.Fatal(err)
	}
	client, err := graph.New(graph.Config{BaseURL: srv.Graph, HTTPClient: hc, Credential: cred})
	if err != nil {
		b.Fatal(err)
	}
	storeCfg := idempotency.Config{Owner: "bench", Lease: 30 * time.Second, Logger: log}
	cfg := job.Config{
		Graph: client, Tokens: cred, Limiter: limiter,
		Observer:       worker.NewTelemetry(js, names, metrics.New(prometheus.NewRegistry()), log),
		Policy:         wire.Policy{DefaultTenant: benchTenant},
		Worker:         "bench",
		KeepAliveEvery: 10 * time.Second,
		Logger:         log,
	}
	if adjust != nil {
		adjust(&cfg, &storeCfg, &keys)
	}
	store := idempotency.New(keys, storeCfg)
	cfg.Ledger = store
	h, err := job.New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	return h, store
}

// startBenchServers starts the test binary again as TestHelperBenchServers
// and reads where it serves. The helper ends when the benchmark does.
func startBenchServers(b *testing.B) benchServers {
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperBenchServers$")
	cmd.Env = append(os.Environ(), benchServersEnv+"=1")
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = stdin.Close() // the helper stops when its stdin ends
		_ = cmd.Wait()
	})
	out := bufio.NewReader(stdout)
	line, err := out.ReadBytes('\n')
	if err != nil {
		b.Fatalf("helper process: %v", err)
	}
	go func() { _, _ = io.Copy(io.Discard, out) }()
	var srv benchServers
	if err := json.Unmarshal(line, &srv); err != nil {
		b.Fatalf("helper process said %q: %v", line, err)
	}
	return srv
}

// TestHelperBenchServers is not a test: it is the helper process of
// BenchmarkHandle, and skips unless started as one. It runs a nats-server
// and the Graph double, prints where they serve as one JSON line, and
// stops when its stdin ends.
func TestHelperBenchServers(t *testing.T) {
	if os.Getenv(benchServersEnv) == "" {
		t.Skip("the helper process of BenchmarkHandle")
	}
	ns := devservertest.Start(t)
	gs := graphsim.New(graphsim.Config{Limit: -1})
	defer gs.Close()
	gs.AddTenant(benchTenant)
	gs.AddApp(benchClient, benchSecret)
	line, err := json.Marshal(benchServers{NATS: ns.URL(), Graph: gs.GraphURL(), Authority: gs.AuthorityHost(), CA: gs.CACertPEM()})
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("%s\n", line)
	_, _ = io.Copy(io.Discard, os.Stdin)
}
