package devservertest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/recoverpasscode/recoverpasscode/devserver"
)

// Account is the account streams live in on servers without accounts
// configured, for StreamLeader and ConsumerLeader.
const Account = server.DEFAULT_GLOBAL_ACCOUNT

// ClusterConfig describes a JetStream cluster of embedded servers on
// loopback, for tests that stop and restart nodes.
type ClusterConfig struct {
	// Size is the number of nodes. Defaults to 3.
	Size int
	// Dir holds one store directory per node. Required.
	Dir string
	// Name is the cluster's name; node i is named Name-i. Defaults to
	// "recoverpasscode".
	Name string
	// StartTimeout bounds how long starting a node waits for it to accept
	// connections. Defaults to 10s.
	StartTimeout time.Duration
	// Sync is JetStream's sync_interval as a server configuration file
	// writes it: "always" (fsync every write before acknowledging it), a
	// duration such as "2m" (fsync in the background that often), or empty
	// for the server's default (2 minutes); see devserver.ParseSync.
	Sync string
}

// withDefaults fills in the defaults and checks what cannot be defaulted.
func (cfg ClusterConfig) withDefaults() (ClusterConfig, error) {
	if cfg.Dir == "" {
		return cfg, errors.New("devservertest: cluster: a store directory is required")
	}
	if _, _, err := devserver.ParseSync(cfg.Sync); err != nil {
		return cfg, fmt.Errorf("devservertest: cluster: %w", err)
	}
	if cfg.Size == 0 {
		cfg.Size = 3
	}
	if cfg.Name == "" {
		cfg.Name = "recoverpasscode"
	}
	if cfg.StartTimeout == 0 {
		cfg.StartTimeout = 10 * time.Second
	}
	return cfg, nil
}

// NodeDir is the store directory of node i (counting from 0) of a
// cluster started with cfg, so that a test can prepare it (mount a file
// system there, say) before the node starts.
func (cfg ClusterConfig) NodeDir(i int) string {
	if cfg.Name == "" {
		cfg.Name = "recoverpasscode"
	}
	return filepath.Join(cfg.Dir, nodeName(cfg.Name, i))
}

// nodeName is the server name of node i of cluster name.
func nodeName(cluster string, i int) string { return fmt.Sprintf("%s-%d", cluster, i) }

// Cluster is a running JetStream cluster of embedded servers. Each node
// keeps its client port, route port and store directory across Stop and
// Restart, so clients given URL find it again and it rejoins with its
// data, as a restarted production node does. It is safe for concurrent
// use.
type Cluster struct {
	cfg   ClusterConfig
	mu    sync.Mutex
	nodes []*clusterNode
}

type clusterNode struct {
	spec     nodeSpec
	srv      *server.Server // nil while stopped; guarded by Cluster.mu
	starting bool           // guarded by Cluster.mu
}

// nodeSpec is everything one node needs to start, the same at every
// restart: a process node (see ProcessCluster) receives it as JSON.
type nodeSpec struct {
	Name        string
	ClusterName string
	ClientPort  int
	RoutePort   int
	// Routes are the route ports of every node, this one's included.
	Routes []int
	Dir    string
	Sync   string
}

// nodeSpecs chooses the ports of cfg.Size nodes. Every node needs every
// route before it starts, so the ports are chosen up front and kept for
// restarts.
func nodeSpecs(cfg ClusterConfig) ([]nodeSpec, error) {
	ports, err := freePorts(2 * cfg.Size)
	if err != nil {
		return nil, fmt.Errorf("devservertest: cluster: %w", err)
	}
	var routes []int
	for i := range cfg.Size {
		routes = append(routes, ports[2*i+1])
	}
	specs := make([]nodeSpec, cfg.Size)
	for i := range specs {
		specs[i] = nodeSpec{
			Name: nodeName(cfg.Name, i), ClusterName: cfg.Name, ClientPort: ports[2*i], RoutePort: ports[2*i+1],
			Routes: routes, Dir: cfg.NodeDir(i), Sync: cfg.Sync,
		}
	}
	return specs, nil
}

// options are the server options of the node spec describes.
func (spec nodeSpec) options() (*server.Options, error) {
	interval, always, err := devserver.ParseSync(spec.Sync)
	if err != nil {
		return nil, fmt.Errorf("devservertest: cluster node %s: %w", spec.Name, err)
	}
	opts := &server.Options{
		ServerName:   spec.Name,
		Host:         "127.0.0.1",
		Port:         spec.ClientPort,
		JetStream:    true,
		StoreDir:     spec.Dir,
		SyncInterval: interval,
		SyncAlways:   always,
		NoLog:        true,
		NoSigs:       true,
	}
	opts.Cluster.Name = spec.ClusterName
	opts.Cluster.Host = "127.0.0.1"
	opts.Cluster.Port = spec.RoutePort
	for _, port := range spec.Routes {
		opts.Routes = append(opts.Routes, &url.URL{Scheme: "nats-route", Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(port))})
	}
	return opts, nil
}

// clientURL is the node's client URL.
func (spec nodeSpec) clientURL() string {
	return "nats://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(spec.ClientPort))
}

// startServer starts the node spec describes in this process and returns
// once it accepts connections.
func (spec nodeSpec) startServer(timeout time.Duration) (*server.Server, error) {
	opts, err := spec.options()
	if err != nil {
		return nil, err
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("devservertest: cluster node %s: %w", spec.Name, err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(timeout) {
		srv.Shutdown()
		srv.WaitForShutdown()
		return nil, fmt.Errorf("devservertest: cluster node %s: not ready to accept connections on port %d within %s", spec.Name, spec.ClientPort, timeout)
	}
	return srv, nil
}

// NewCluster starts cfg.Size nodes routed to each other and returns once
// every node accepts connections. The JetStream meta leader is elected a
// moment later; WaitMetaLeader waits for it.
func NewCluster(cfg ClusterConfig) (*Cluster, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	specs, err := nodeSpecs(cfg)
	if err != nil {
		return nil, err
	}
	c := &Cluster{cfg: cfg}
	for _, spec := range specs {
		c.nodes = append(c.nodes, &clusterNode{spec: spec})
	}
	// Start the nodes together: a node waits for its peers before its
	// JetStream is usable, not before it accepts connections.
	errs := make([]error, cfg.Size)
	var wg sync.WaitGroup
	for i := range c.nodes {
		wg.Go(func() { errs[i] = c.Restart(i) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		c.Shutdown()
		return nil, err
	}
	return c, nil
}

// StartCluster starts a three-node cluster with its data in a temporary
// directory, and shuts it down when the test ends.
func StartCluster(tb testing.TB) *Cluster {
	tb.Helper()
	c, err := NewCluster(ClusterConfig{Dir: tb.TempDir()})
	if err != nil {
		tb.Fatalf("start embedded nats cluster: %v", err)
	}
	tb.Cleanup(c.Shutdown)
	return c
}

// Size is the number of nodes, running or not.
func (c *Cluster) Size() int { return len(c.nodes) }

// URL lists every node's client URL, comma-separated, as NATS_URL does.
func (c *Cluster) URL() string {
	urls := make([]string, len(c.nodes))
	for i := range c.nodes {
		urls[i] = c.NodeURL(i)
	}
	return strings.Join(urls, ",")
}

// NodeURL is node i's client URL; it stays the same across restarts.
func (c *Cluster) NodeURL(i int) string { return c.nodes[i].spec.clientURL() }

// NodeName is node i's server name.
func (c *Cluster) NodeName(i int) string { return c.nodes[i].spec.Name }

// Running reports whether node i is running.
func (c *Cluster) Running(i int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[i].srv != nil
}

// Stop shuts node i down and waits until it has exited. Stopping a stopped
// node does nothing.
func (c *Cluster) Stop(i int) {
	c.mu.Lock()
	srv := c.nodes[i].srv
	c.nodes[i].srv = nil
	c.mu.Unlock()
	if srv != nil {
		srv.Shutdown()
		srv.WaitForShutdown()
	}
}

// Restart starts node i again on its ports with its store directory, and
// returns once it accepts connections. Restarting a running node does
// nothing.
func (c *Cluster) Restart(i int) error {
	c.mu.Lock()
	n := c.nodes[i]
	if n.srv != nil || n.starting {
		c.mu.Unlock()
		return nil
	}
	n.starting = true
	c.mu.Unlock()
	srv, err := n.spec.startServer(c.cfg.StartTimeout)
	c.mu.Lock()
	n.starting = false
	n.srv = srv
	c.mu.Unlock()
	return err
}

// Shutdown stops every node.
func (c *Cluster) Shutdown() {
	var wg sync.WaitGroup
	for i := range c.nodes {
		wg.Go(func() { c.Stop(i) })
	}
	wg.Wait()
}

// MetaLeader returns the index of the node that leads the JetStream meta
// group, or -1 when no running node does (during an election).
func (c *Cluster) MetaLeader() int {
	return c.find(func(s *server.Server) bool { return s.JetStreamIsLeader() })
}

// StreamLeader returns the index of the node that leads stream in account
// (Account on servers without accounts), or -1 when no running node does.
func (c *Cluster) StreamLeader(account, stream string) int {
	return c.find(func(s *server.Server) bool { return s.JetStreamIsStreamLeader(account, stream) })
}

// ConsumerLeader returns the index of the node that leads the consumer, or
// -1 when no running node does.
func (c *Cluster) ConsumerLeader(account, stream, consumer string) int {
	return c.find(func(s *server.Server) bool { return s.JetStreamIsConsumerLeader(account, stream, consumer) })
}

// WaitMetaLeader waits until a running node leads the meta group and
// returns its index, or ctx's error.
func (c *Cluster) WaitMetaLeader(ctx context.Context) (int, error) {
	return c.wait(ctx, "a JetStream meta leader", c.MetaLeader)
}

// WaitStreamLeader waits until a running node leads stream and returns its
// index, or ctx's error.
func (c *Cluster) WaitStreamLeader(ctx context.Context, account, stream string) (int, error) {
	return c.wait(ctx, "a leader of stream "+stream, func() int { return c.StreamLeader(account, stream) })
}

// find returns the first running node for which is holds, or -1.
func (c *Cluster) find(is func(*server.Server) bool) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, n := range c.nodes {
		if n.srv != nil && is(n.srv) {
			return i
		}
	}
	return -1
}

// wait re-checks find every 50ms: the server offers no notification of
// elections to an embedding program.
func (c *Cluster) wait(ctx context.Context, what string, find func() int) (int, error) {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if i := find(); i >= 0 {
			return i, nil
		}
		select {
		case <-ctx.Done():
			return -1, fmt.Errorf("devservertest: cluster: waiting for %s: %w", what, ctx.Err())
		case <-tick.C:
		}
	}
}

// freePorts finds n loopback ports that are free now.
func freePorts(n int) ([]int, error) {
	ports := make([]int, n)
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find a free port: %w", err)
		}
		defer l.Close()
		ports[i] = l.Addr().(*net.TCPAddr).Port
	}
	return ports, nil
}
