package deploy

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/recoverpasscode/recoverpasscode/queue"
)

// startNode runs one cluster node from its config on loopback, listening for
// routes on clusterPort and routing to routes instead of the nats-N host
// names.
func startNode(t *testing.T, path string, clusterPort int, routes []*url.URL) *server.Server {
	t.Helper()
	opts, err := server.ProcessConfigFile(path)
	if err != nil {
		t.Fatalf("load %s: %v", path, err)
	}
	opts.Host, opts.Port = "127.0.0.1", server.RANDOM_PORT
	opts.HTTPHost, opts.HTTPPort = "", 0
	opts.Cluster.Host, opts.Cluster.Port = "127.0.0.1", clusterPort
	opts.Routes, opts.RoutesStr = routes, ""
	opts.StoreDir = t.TempDir()
	opts.NoLog, opts.NoSigs = true, true
	srv, err := server.NewServer(opts)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		t.Fatalf("%s: not ready for connections", path)
	}
	t.Cleanup(func() {
		srv.Shutdown()
		srv.WaitForShutdown()
	})
	return srv
}

// freePorts finds n loopback ports that are free now. A JetStream cluster
// node needs its routes configured before it starts, so the ports are
// chosen up front.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	ports := make([]int, n)
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		ports[i] = l.Addr().(*net.TCPAddr).Port
	}
	return ports
}

// TestNATSClusterForms starts the three node configs together and proves
// that they form one JetStream cluster with the accounts: the worker
// declares its streams, consumer and buckets replicated on all three nodes,
// and a source's job is stored.
func TestNATSClusterForms(t *testing.T) {
	passwords := setPasswords(t)
	ports := freePorts(t, 3)
	var routes []*url.URL
	for _, p := range ports {
		routes = append(routes, &url.URL{Scheme: "nats-route", Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(p))})
	}
	nodes := make([]*server.Server, len(ports))
	for i, p := range ports {
		nodes[i] = startNode(t, filepath.Join("nats", fmt.Sprintf("nats-%d.conf", i+1)), p, routes)
	}
	first := nodes[0]

	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	worker := connect(t, first.ClientURL(), "worker", passwords["worker"])
	setup := queue.Setup{Replicas: 3}
	// The cluster takes a moment to elect its JetStream leader; until then
	// the request fails, so retry it until it succeeds or ctx ends.
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		reqCtx, reqCancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := setup.Ensure(reqCtx, worker.js, workerBuckets(3)...)
		reqCancel()
		if err == nil {
			break
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			t.Fatalf("no replicated streams within the deadline: %v", err)
		}
	}

	ticketing := connect(t, first.ClientURL(), "ticketing", passwords["ticketing"])
	ack, err := ticketing.js.Publish(ctx, "recoverpasscode.jobs.ticketing", []byte(`{"managedDeviceId":"0f6a7a2c-3d1e-4a6b-9c1d-2b7e8f9a0b1c"}`), jetstream.WithExpectStream(jobsStream))
	if err != nil {
		t.Fatalf("submit to the replicated stream: %v", err)
	}
	s, err := worker.js.Stream(ctx, jobsStream)
	if err != nil {
		t.Fatal(err)
	}
	info := s.CachedInfo()
	if info.State.Msgs != 1 || ack.Sequence != 1 {
		t.Errorf("stream holds %d messages, ack sequence %d; want 1 and 1", info.State.Msgs, ack.Sequence)
	}
	if info.Cluster == nil || len(info.Cluster.Replicas) != 2 {
		t.Errorf("stream cluster info %+v, want a leader and two replicas", info.Cluster)
	}
	ticketing.expectNoDenials(t)
	worker.expectNoDenials(t)
}
