package devservertest

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// nodeEnv carries a node's spec to a re-executed test binary, which then
// runs that node instead of the tests (see NodeMain).
const nodeEnv = "DEVSERVERTEST_NODE"

// readyLine is what a node process prints on its standard output once it
// accepts connections.
const readyLine = "devservertest: node ready"

// NodeMain runs a cluster node and exits when this process was started as
// one by a ProcessCluster; otherwise it returns at once. Call it first in
// the TestMain of every test package that starts a ProcessCluster: the
// nodes are that package's test binary, re-executed.
//
// A node process stops softly (the server's shutdown) on SIGTERM or
// SIGINT, dies at once on SIGKILL as a crashed server does, and exits when
// its standard input closes, so that no node outlives a test binary that
// died.
func NodeMain() {
	spec := os.Getenv(nodeEnv)
	if spec == "" {
		return
	}
	os.Exit(runNode(spec))
}

// runNode runs the node spec describes until told to stop; it returns the
// exit status.
func runNode(data string) int {
	var spec nodeSpec
	if err := json.Unmarshal([]byte(data), &spec); err != nil {
		fmt.Fprintln(os.Stderr, "devservertest: node:", err)
		return 2
	}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	srv, err := spec.startServer(30 * time.Second)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println(readyLine)
	orphaned := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		close(orphaned)
	}()
	select {
	case <-stop:
		srv.Shutdown()
		srv.WaitForShutdown()
		return 0
	case <-orphaned:
		return 3
	}
}

// ProcessCluster is a JetStream cluster whose every node is a separate
// process (the test binary re-executed, see NodeMain), so that a test can
// kill nodes with SIGKILL, one or all at once, as a crash or a power cut
// ends a server: nothing is shut down, nothing flushed by the server. A
// killed process's unsynced writes still sit in the operating system's
// page cache, though, and reach the disk: only a lost machine loses them,
// which a test shows by storing on powerfs (see its package).
// Nodes keep their ports and store directories across restarts, as in
// Cluster. It is safe for concurrent use.
type ProcessCluster struct {
	cfg   ClusterConfig
	mu    sync.Mutex
	nodes []*processNode
}

type processNode struct {
	spec   nodeSpec
	cmd    *exec.Cmd     // nil while stopped; guarded by ProcessCluster.mu
	stdin  io.Closer     // closing it ends an orphaned node
	exited chan struct{} // closed when cmd has ended
	logs   *logBuffer
}

// NewProcessCluster starts cfg.Size node processes routed to each other
// and returns once every node accepts connections. The calling binary's
// TestMain must call NodeMain.
func NewProcessCluster(cfg ClusterConfig) (*ProcessCluster, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	specs, err := nodeSpecs(cfg)
	if err != nil {
		return nil, err
	}
	c := &ProcessCluster{cfg: cfg}
	for _, spec := range specs {
		c.nodes = append(c.nodes, &processNode{spec: spec, logs: &logBuffer{}})
	}
	if err := c.RestartAll(); err != nil {
		c.Shutdown()
		return nil, err
	}
	return c, nil
}

// StartProcessCluster starts a three-node process cluster with cfg (Dir
// defaults to a temporary directory), and shuts it down when the test
// ends. When the test fails it logs what each node printed.
func StartProcessCluster(tb testing.TB, cfg ClusterConfig) *ProcessCluster {
	tb.Helper()
	if cfg.Dir == "" {
		cfg.Dir = tb.TempDir()
	}
	c, err := NewProcessCluster(cfg)
	if err != nil {
		tb.Fatalf("start nats cluster processes: %v", err)
	}
	tb.Cleanup(func() {
		c.Shutdown()
		if tb.Failed() {
			for _, n := range c.nodes {
				if out := n.logs.String(); out != "" {
					tb.Logf("node %s printed:\n%s", n.spec.Name, out)
				}
			}
		}
	})
	return c
}

// Size is the number of nodes, running or not.
func (c *ProcessCluster) Size() int { return len(c.nodes) }

// URL lists every node's client URL, comma-separated, as NATS_URL does.
func (c *ProcessCluster) URL() string {
	urls := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		urls[i] = n.spec.clientURL()
	}
	return strings.Join(urls, ",")
}

// NodeURL is node i's client URL; it stays the same across restarts.
func (c *ProcessCluster) NodeURL(i int) string { return c.nodes[i].spec.clientURL() }

// NodeName is node i's server name.
func (c *ProcessCluster) NodeName(i int) string { return c.nodes[i].spec.Name }

// Running reports whether node i's process runs.
func (c *ProcessCluster) Running(i int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[i].cmd != nil
}

// Kill ends node i's process with SIGKILL and waits until it is gone.
// Killing a stopped node does nothing.
func (c *ProcessCluster) Kill(i int) { c.signal(syscall.SIGKILL, i) }

// KillAll sends SIGKILL to every node's process before waiting for any of
// them, so that they die together, as in a power cut, and returns once all
// are gone.
func (c *ProcessCluster) KillAll() {
	all := make([]int, len(c.nodes))
	for i := range all {
		all[i] = i
	}
	c.signal(syscall.SIGKILL, all...)
}

// Stop ends node i's process softly (SIGTERM: the server shuts down) and
// waits until it has exited; a node still running after 30s is killed.
func (c *ProcessCluster) Stop(i int) { c.signal(syscall.SIGTERM, i) }

// signal sends sig to the processes of the given nodes, then waits for
// each to exit.
func (c *ProcessCluster) signal(sig syscall.Signal, nodes ...int) {
	c.mu.Lock()
	var waits []*processNode
	for _, i := range nodes {
		n := c.nodes[i]
		if n.cmd == nil {
			continue
		}
		_ = n.cmd.Process.Signal(sig)
		waits = append(waits, n)
	}
	c.mu.Unlock()
	for _, n := range waits {
		select {
		case <-n.exited:
		case <-time.After(30 * time.Second):
			_ = n.cmd.Process.Kill()
			<-n.exited
		}
		c.mu.Lock()
		n.cmd = nil
		_ = n.stdin.Close()
		c.mu.Unlock()
	}
}

// Restart starts node i's process again on its ports with its store
// directory, and returns once it accepts connections. Restarting a running
// node does nothing.
func (c *ProcessCluster) Restart(i int) error {
	n := c.nodes[i]
	c.mu.Lock()
	running := n.cmd != nil
	c.mu.Unlock()
	if running {
		return nil
	}
	cmd, stdin, exited, err := c.startProcess(n)
	if err != nil {
		return err
	}
	c.mu.Lock()
	n.cmd, n.stdin, n.exited = cmd, stdin, exited
	c.mu.Unlock()
	return nil
}

// RestartAll restarts every stopped node at once, as a cluster comes back
// after a power cut, and returns once each accepts connections.
func (c *ProcessCluster) RestartAll() error {
	errs := make([]error, len(c.nodes))
	var wg sync.WaitGroup
	for i := range c.nodes {
		wg.Go(func() { errs[i] = c.Restart(i) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// startProcess starts n's process and waits for it to say it is ready.
func (c *ProcessCluster) startProcess(n *processNode) (*exec.Cmd, io.Closer, chan struct{}, error) {
	spec, err := json.Marshal(n.spec)
	if err != nil {
		return nil, nil, nil, err
	}
	// Pipes of our own rather than cmd's: Wait would close those while
	// the output is still being read.
	outR, outW, err := os.Pipe()
	if err != nil {
		return nil, nil, nil, err
	}
	inR, inW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return nil, nil, nil, err
	}
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), nodeEnv+"="+string(spec))
	cmd.Stdin, cmd.Stdout, cmd.Stderr = inR, outW, n.logs
	err = cmd.Start()
	outW.Close()
	inR.Close()
	if err != nil {
		outR.Close()
		inW.Close()
		return nil, nil, nil, fmt.Errorf("devservertest: cluster node %s: %w", n.spec.Name, err)
	}
	stdout, stdin := outR, inW
	ready := make(chan bool, 1)
	go func() {
		defer stdout.Close()
		sc := bufio.NewScanner(stdout)
		said := false
		for sc.Scan() {
			if !said && sc.Text() == readyLine {
				said = true
				ready <- true
				continue
			}
			fmt.Fprintln(n.logs, sc.Text())
		}
		if !said {
			ready <- false
		}
	}()
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	fail := func(why string) (*exec.Cmd, io.Closer, chan struct{}, error) {
		_ = cmd.Process.Kill()
		<-exited
		stdin.Close()
		return nil, nil, nil, fmt.Errorf("devservertest: cluster node %s: %s: %s", n.spec.Name, why, strings.TrimSpace(n.logs.String()))
	}
	select {
	case ok := <-ready:
		if !ok {
			return fail("exited before accepting connections")
		}
	case <-time.After(c.cfg.StartTimeout + 20*time.Second):
		// The process must also start up, under -race on a busy machine.
		return fail("not ready to accept connections")
	}
	return cmd, stdin, exited, nil
}

// Shutdown stops every node softly.
func (c *ProcessCluster) Shutdown() {
	all := make([]int, len(c.nodes))
	for i := range all {
		all[i] = i
	}
	c.signal(syscall.SIGTERM, all...)
}

// logBuffer collects a node's output; it is safe for concurrent use.
type logBuffer struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
