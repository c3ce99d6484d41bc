package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/recoverpasscode/recoverpasscode/devserver"
	"github.com/recoverpasscode/recoverpasscode/graph/graphsim"
	"github.com/recoverpasscode/recoverpasscode/idempotency"
	"github.com/recoverpasscode/recoverpasscode/queue"
	"github.com/recoverpasscode/recoverpasscode/ratelimit"
	"github.com/recoverpasscode/recoverpasscode/wire"
)

// The directory of every stack: one tenant, one app registration.
const (
	benchTenant = "33333333-3333-4333-8333-333333333333"
	benchClient = "55555555-5555-4555-8555-555555555555"
	// source is the jobs subject's last token and the results' middle one.
	source = "bench"
)

// stack is what one measurement runs against: an embedded nats-server with
// the streams and the workers' consumer set up, and the Graph and Entra ID
// double. Each measurement gets a fresh stack, so none inherits another's
// records, streams or Graph limits.
type stack struct {
	dir     string
	servers []*devserver.Server
	url     string // NATS_URL: every server, comma-separated
	nats    natsSpec
	gs      *graphsim.Server
	nc      *nats.Conn
	js      jetstream.JetStream
	names   wire.Names
	secret  string
	caFile  string
	results jetstream.Stream
	dlq     jetstream.Stream
}

// natsSpec says which NATS a stack runs: the zero value is one server with
// the server's default fsync policy.
type natsSpec struct {
	// nodes is the number of servers; more than one form a JetStream
	// cluster, and the streams and buckets get as many replicas.
	nodes int
	// sync is JetStream's sync_interval (see devserver.ParseSync).
	sync string
}

// replicas is the replica count of every stream and bucket on the spec.
func (n natsSpec) replicas() int { return max(1, n.nodes) }

// where names the layout: "1 node" or "3-node cluster (R3)".
func (n natsSpec) where() string {
	if n.nodes > 1 {
		return fmt.Sprintf("%d-node cluster (R%d)", n.nodes, n.nodes)
	}
	return "1 node"
}

// String names the layout and the sync setting, for progress lines.
func (n natsSpec) String() string {
	sync := "sync_interval default (2m)"
	if n.sync != "" {
		sync = "sync_interval " + n.sync
	}
	return n.where() + ", " + sync
}

// startStack starts a stack on one server with its files in a new
// directory under root.
func startStack(ctx context.Context, root string, sim graphsim.Config) (*stack, error) {
	return startStackOn(ctx, root, sim, natsSpec{})
}

// startStackOn starts a stack on the NATS that spec describes.
func startStackOn(ctx context.Context, root string, sim graphsim.Config, spec natsSpec) (_ *stack, err error) {
	dir, err := os.MkdirTemp(root, "stack-")
	if err != nil {
		return nil, fmt.Errorf("stack: %w", err)
	}
	s := &stack{dir: dir, secret: rand.Text(), nats: spec}
	defer func() {
		if err != nil {
			s.close()
		}
	}()
	if err := s.startServers(); err != nil {
		return nil, err
	}
	if s.gs, err = graphsim.Start(sim); err != nil {
		return nil, err
	}
	s.gs.AddTenant(benchTenant)
	s.gs.AddApp(benchClient, s.secret)
	s.caFile = filepath.Join(dir, "graphsim-ca.pem")
	if err := os.WriteFile(s.caFile, s.gs.CACertPEM(), 0o600); err != nil {
		return nil, fmt.Errorf("stack: %w", err)
	}
	if s.nc, err = nats.Connect(s.url, nats.Name("recoverpasscode bench")); err != nil {
		return nil, fmt.Errorf("stack: connect: %w", err)
	}
	if s.js, err = jetstream.New(s.nc, jetstream.WithPublishAsyncMaxPending(1024)); err != nil {
		return nil, fmt.Errorf("stack: %w", err)
	}
	sctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := s.setUp(sctx); err != nil {
		return nil, err
	}
	if s.results, err = s.js.Stream(sctx, s.names.ResultsStream()); err != nil {
		return nil, fmt.Errorf("stack: %w", err)
	}
	if s.dlq, err = s.js.Stream(sctx, s.names.DLQStream()); err != nil {
		return nil, fmt.Errorf("stack: %w", err)
	}
	return s, nil
}

// close stops everything the stack started and removes its files.
func (s *stack) close() {
	if s.nc != nil {
		s.nc.Close()
	}
	if s.gs != nil {
		s.gs.Close()
	}
	for _, ns := range s.servers {
		ns.Shutdown()
	}
	_ = os.RemoveAll(s.dir)
}

// startServers starts the stack's NATS: one server, or the nodes of a
// cluster routed to each other, each with the spec's sync setting.
func (s *stack) startServers() error {
	n := s.nats.replicas()
	if n == 1 {
		ns, err := devserver.Start(devserver.Config{StoreDir: filepath.Join(s.dir, "nats"), Sync: s.nats.sync})
		if err != nil {
			return err
		}
		s.servers, s.url = []*devserver.Server{ns}, ns.URL()
		return nil
	}
	// Every node needs every route before it starts.
	var clients, routes []string
	for range n {
		c, err := freeAddr()
		if err != nil {
			return err
		}
		r, err := freeAddr()
		if err != nil {
			return err
		}
		clients, routes = append(clients, c), append(routes, r)
	}
	errs := make([]error, n)
	servers := make([]*devserver.Server, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			_, port, _ := net.SplitHostPort(clients[i])
			_, routePort, _ := net.SplitHostPort(routes[i])
			servers[i], errs[i] = devserver.Start(devserver.Config{
				Port: atoi(port), StoreDir: filepath.Join(s.dir, fmt.Sprintf("nats-%d", i)),
				Name: fmt.Sprintf("bench-%d", i), Sync: s.nats.sync,
				Cluster: devserver.Cluster{Name: "bench", Port: atoi(routePort), Routes: routes},
			})
		})
	}
	wg.Wait()
	var urls []string
	for _, ns := range servers {
		if ns != nil {
			s.servers = append(s.servers, ns)
			urls = append(urls, ns.URL())
		}
	}
	s.url = strings.Join(urls, ",")
	return errors.Join(errs...)
}

// setUp creates the streams, the workers' consumer and the buckets, as the
// worker configures them by default: the floor consumer writes idempotency
// records but sets nothing up. A new cluster answers only once it has
// elected a meta leader, so a failed try is repeated until ctx ends.
func (s *stack) setUp(ctx context.Context) error {
	r := s.nats.replicas()
	// A stream created before the cluster has a meta leader may hang, so
	// wait for one first: account info answers only then.
	for r > 1 {
		tctx, cancel := context.WithTimeout(ctx, time.Second)
		_, err := s.js.AccountInfo(tctx)
		cancel()
		if err == nil {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("stack: the cluster elected no JetStream leader: %w", err)
		case <-time.After(100 * time.Millisecond):
		}
	}
	for {
		// Each try gets its own deadline: a request made before the
		// cluster is ready may get no answer at all.
		tctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := (queue.Setup{Names: s.names, Replicas: r}).Ensure(tctx, s.js,
			idempotency.BucketConfig(s.names.KeysBucket(), idempotency.DefaultTTL, r),
			ratelimit.BucketConfig(s.names.LimitsBucket(), r))
		cancel()
		if err == nil || r == 1 {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("stack: set up the streams on the cluster: %w", err)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// atoi is strconv.Atoi for ports that freeAddr made.
func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

// workerEnv is the environment of a worker process on this stack, as an
// operator would configure one: NATS_*, AZURE_*, GRAPH_BASE_URL, RECOVER_*,
// and trust for the double's CA through SSL_CERT_FILE.
func (s *stack) workerEnv(name, rate string, concurrency int, httpAddr string) []string {
	return []string{
		"SSL_CERT_FILE=" + s.caFile,
		"NATS_URL=" + s.url,
		"RECOVER_REPLICAS=" + fmt.Sprint(s.nats.replicas()),
		"AZURE_TENANT_ID=" + benchTenant,
		"AZURE_CLIENT_ID=" + benchClient,
		"AZURE_CLIENT_SECRET=" + s.secret,
		"AZURE_AUTHORITY_HOST=" + s.gs.AuthorityHost(),
		"GRAPH_BASE_URL=" + s.gs.GraphURL(),
		"RECOVER_TENANTS=" + benchTenant,
		"RECOVER_RATE_LIMIT=" + rate,
		"RECOVER_CONCURRENCY=" + fmt.Sprint(concurrency),
		"RECOVER_HTTP_ADDR=" + httpAddr,
		"RECOVER_WORKER_NAME=" + name,
		"RECOVER_LOG_LEVEL=info",
		"RECOVER_LOG_FORMAT=json",
	}
}

// jobID and deviceID name the i-th job of a stack and its device.
func jobID(i int) string    { return fmt.Sprintf("bench-%07d", i) }
func deviceID(i int) string { return fmt.Sprintf("2d6a3d0e-8f5c-4d7a-9b1e-%012d", i) }

// jobMsg is the i-th job, as a ticketing integration would publish it.
func (s *stack) jobMsg(i int) (*nats.Msg, error) {
	data, err := json.Marshal(wire.Job{
		ID:              jobID(i),
		ManagedDeviceID: deviceID(i),
		RequestedBy:     "helpdesk-agent@contoso.com",
		Ticket:          fmt.Sprintf("INC%07d", i),
	})
	if err != nil {
		return nil, err
	}
	m := nats.NewMsg(s.names.Jobs(source))
	m.Data = data
	m.Header.Set(jetstream.MsgIDHeader, jobID(i))
	return m, nil
}

// publishJobs queues jobs from to from+n-1, a window of them at a time,
// and returns once every one is stored.
func (s *stack) publishJobs(ctx context.Context, from, n int) error {
	const window = 1024
	futures := make([]jetstream.PubAckFuture, 0, window)
	flush := func() error {
		for _, f := range futures {
			select {
			case <-f.Ok():
			case err := <-f.Err():
				return fmt.Errorf("publish job: %w", err)
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		futures = futures[:0]
		return nil
	}
	for i := from; i < from+n; i++ {
		m, err := s.jobMsg(i)
		if err != nil {
			return err
		}
		f, err := s.js.PublishMsgAsync(m)
		if err != nil {
			return fmt.Errorf("publish job: %w", err)
		}
		if futures = append(futures, f); len(futures) == window {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	return flush()
}

// resultCount is the number of results stored so far.
func (s *stack) resultCount(ctx context.Context) (uint64, error) {
	info, err := s.results.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("results stream: %w", err)
	}
	return info.State.Msgs, nil
}

// checkClean reports dead letters, and jobs Graph saw a number of times
// other than once: a measurement is only valid when every job succeeded
// with one call.
func (s *stack) checkClean(ctx context.Context, jobs int) error {
	info, err := s.dlq.Info(ctx)
	if err != nil {
		return fmt.Errorf("dead-letter stream: %w", err)
	}
	if info.State.Msgs > 0 {
		return fmt.Errorf("%d jobs went to the dead-letter stream", info.State.Msgs)
	}
	performed := 0
	for _, c := range s.gs.Calls() {
		if c.Performed {
			performed++
		}
	}
	if performed != jobs {
		return fmt.Errorf("graph performed %d actions for %d jobs", performed, jobs)
	}
	return nil
}

// fill records how the results stream filled up: the count at each poll.
type fill struct {
	at []time.Time
	n  []uint64
}

// awaitResults polls the results stream every 10ms until it
// holds want results, and returns the record of it.
func (s *stack) awaitResults(ctx context.Context, want uint64, exited <-chan error) (fill, error) {
	return s.awaitMore(ctx, fill{}, want, exited)
}

// sample is a fill of one poll of the results stream now.
func (s *stack) sample(ctx context.Context) (fill, error) {
	n, err := s.resultCount(ctx)
	if err != nil {
		return fill{}, err
	}
	return fill{at: []time.Time{time.Now()}, n: []uint64{n}}, nil
}

// awaitMore is awaitResults adding its polls to f.
func (s *stack) awaitMore(ctx context.Context, f fill, want uint64, exited <-chan error) (fill, error) {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		n, err := s.resultCount(ctx)
		if err != nil {
			return f, err
		}
		f.at, f.n = append(f.at, time.Now()), append(f.n, n)
		if n >= want {
			return f, nil
		}
		select {
		case <-ctx.Done():
			return f, fmt.Errorf("%d of %d results: %w", n, want, ctx.Err())
		case err := <-exited:
			return f, fmt.Errorf("%d of %d results: a process ended: %w", n, want, err)
		case <-tick.C:
		}
	}
}

// crossing is when the count first reached k, interpolated between polls.
func (f fill) crossing(k float64) (time.Time, bool) {
	for i, n := range f.n {
		if float64(n) < k {
			continue
		}
		if i == 0 {
			return f.at[0], true
		}
		prev := float64(f.n[i-1])
		frac := (k - prev) / (float64(n) - prev)
		span := f.at[i].Sub(f.at[i-1])
		return f.at[i-1].Add(time.Duration(frac * float64(span))), true
	}
	return time.Time{}, false
}

// rate is the jobs per second while the count went from 10% to 90% of
// total: the steady state, without process start-up and the last
// stragglers. If the first poll already saw more than 10%, the window
// starts there; a fill that begins with the count before the fleet
// started (throughput's) is then timed from that count, so that a poll
// starved on a loaded machine until most results were in still times
// the run, start-up included, rather than fail.
func (f fill) rate(total int) (float64, error) {
	if len(f.n) == 0 {
		return 0, errors.New("no results")
	}
	lo, hi := max(0.1*float64(total), float64(f.n[0])), 0.9*float64(total)
	t0, ok0 := f.crossing(lo)
	t1, ok1 := f.crossing(hi)
	if !ok0 || !ok1 || !t1.After(t0) {
		return 0, errors.New("the results came too fast to time: queue more jobs")
	}
	return (hi - lo) / t1.Sub(t0).Seconds(), nil
}
