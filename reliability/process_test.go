package reliability_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/recoverpasscode/recoverpasscode/devserver/devservertest"
	"github.com/recoverpasscode/recoverpasscode/internal/testsystem"
	"github.com/recoverpasscode/recoverpasscode/ratelimit"
	"github.com/recoverpasscode/recoverpasscode/service"
)

// childEnv carries a worker configuration to a re-executed test binary,
// which then runs that worker instead of the tests. Re-executing the test
// binary costs no build, and under -race the worker processes are
// race-checked too; building ./cmd/worker would add a link step per run
// and test the flag parsing that cmd/worker's own tests already cover.
const childEnv = "RELIABILITY_CHILD_WORKER"

func TestMain(m *testing.M) {
	devservertest.NodeMain()
	if spec := os.Getenv(childEnv); spec != "" {
		os.Exit(runChild(spec))
	}
	os.Exit(m.Run())
}

// childSpec is what a worker process is told, through childEnv. Secrets
// travel in the environment, as in production; these are the double's.
type childSpec struct {
	NATSURL        string
	Replicas       int
	GraphURL       string
	AuthorityHost  string
	Concurrency    int
	Lease          time.Duration
	AckWait        time.Duration
	AttemptTimeout time.Duration
	MaxAttempts    int
	Name           string
	HTTPAddr       string
	// Tenants defaults to the rig's two; Rate to unlimited; LogLevel to
	// info.
	Tenants  []string
	Rate     string
	LogLevel string
	// StatsFile, when set, receives a line of runtime figures every
	// second (see soak_test.go).
	StatsFile string
	// Follow is the follow-through's configuration (see follow_test.go).
	Follow service.FollowConfig
}

func specOf(cfg service.Config) childSpec {
	return childSpec{
		NATSURL: cfg.NATS.URL, Replicas: cfg.Replicas, GraphURL: cfg.GraphURL,
		AuthorityHost: cfg.Credential.AuthorityHost, Concurrency: cfg.Concurrency,
		Lease: cfg.Lease, AckWait: cfg.AckWait, AttemptTimeout: cfg.AttemptTimeout,
		MaxAttempts: cfg.MaxAttempts, Name: cfg.Name, HTTPAddr: cfg.HTTPAddr,
		Tenants: cfg.Tenants, Rate: cfg.Rate.String(), LogLevel: cfg.LogLevel,
		Follow: cfg.Follow,
	}
}

// config is the worker configuration the spec describes. Trust for the
// Graph double comes from SSL_CERT_FILE, as for a private CA in production.
func (s childSpec) config() (service.Config, error) {
	rate := ratelimit.Unlimited
	if s.Rate != "" {
		var err error
		if rate, err = ratelimit.ParseRate(s.Rate); err != nil {
			return service.Config{}, err
		}
	}
	if len(s.Tenants) == 0 {
		s.Tenants = []string{testsystem.Tenant, testsystem.OtherTenant}
	}
	if s.LogLevel == "" {
		s.LogLevel = "info"
	}
	c := service.Config{
		Replicas:       s.Replicas,
		GraphURL:       s.GraphURL,
		Tenants:        s.Tenants,
		Rate:           rate,
		Concurrency:    s.Concurrency,
		KeysTTL:        time.Hour,
		Lease:          s.Lease,
		AttemptTimeout: s.AttemptTimeout,
		MaxAttempts:    s.MaxAttempts,
		DrainTimeout:   15 * time.Second,
		AckWait:        s.AckWait,
		Name:           s.Name,
		HTTPAddr:       s.HTTPAddr,
		LogFormat:      "json",
		LogLevel:       s.LogLevel,
		Follow:         s.Follow,
	}
	c.NATS.URL = s.NATSURL
	c.Credential.TenantID = testsystem.Tenant
	c.Credential.ClientID = testsystem.Client
	c.Credential.ClientSecret = testsystem.Secret
	c.Credential.AuthorityHost = s.AuthorityHost
	c.Credential.GraphBaseURL = s.GraphURL
	return c, nil
}

// runChild runs the worker a spec describes until SIGTERM (soft) or a
// second SIGTERM (hard), like cmd/worker; it returns the exit status.
func runChild(spec string) int {
	var s childSpec
	if err := json.Unmarshal([]byte(spec), &s); err != nil {
		fmt.Fprintln(os.Stderr, "child worker:", err)
		return 2
	}
	soft, hard := service.SignalContexts()
	if s.StatsFile != "" {
		go writeStats(soft, s.StatsFile)
	}
	cfg, err := s.config()
	if err != nil {
		fmt.Fprintln(os.Stderr, "child worker:", err)
		return 2
	}
	if err := service.Run(soft, hard, cfg, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "child worker:", err)
		return 1
	}
	return 0
}

// proc is a worker process.
type proc struct {
	name   string
	cmd    *exec.Cmd
	exited chan struct{} // closed when the process has ended
}

// startProcess runs a real worker process configured like cfg and returns
// once it is ready.
func (r *rig) startProcess(cfg service.Config, statsFile string) *proc {
	r.t.Helper()
	cfg.HTTPAddr = testsystem.FreeAddr(r.t)
	caFile := filepath.Join(r.t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, r.gs.CACertPEM(), 0o600); err != nil {
		r.t.Fatal(err)
	}
	spec := specOf(cfg)
	spec.StatsFile = statsFile
	data, err := json.Marshal(spec)
	if err != nil {
		r.t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), childEnv+"="+string(data), "SSL_CERT_FILE="+caFile)
	logs := &testsystem.Buffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	r.workers = append(r.workers, &workerLogs{name: cfg.Name, logs: logs})
	p := &proc{name: cfg.Name, cmd: cmd, exited: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.exited) }()
	defer func() {
		if r.readyWithin > 0 {
			testsystem.WaitReadyz(r.t, cfg.HTTPAddr, 200, r.readyWithin)
			return
		}
		waitReady(r.t, cfg.HTTPAddr)
	}()
	r.t.Cleanup(func() {
		p.kill()
		// Under -race a worker process reports races on its output, and a
		// SIGKILL leaves no exit status to show for it.
		if strings.Contains(logs.String(), "WARNING: DATA RACE") {
			r.t.Errorf("worker process %s reported a data race", cfg.Name)
		}
	})
	return p
}

// kill ends the process with SIGKILL, as the kernel's OOM killer or a
// node failure does, and waits until it is gone.
func (p *proc) kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.exited
}

// stop ends the process with SIGTERM, as an orchestrator does, and waits
// for it to drain and exit.
func (p *proc) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(30 * time.Second):
		p.kill()
	}
}
