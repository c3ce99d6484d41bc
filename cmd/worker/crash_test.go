package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/recoverpasscode/recoverpasscode/graph/graphsim"
	"github.com/recoverpasscode/recoverpasscode/internal/testsystem"
	"github.com/recoverpasscode/recoverpasscode/service"
	"github.com/recoverpasscode/recoverpasscode/wire"
)

// child is a worker process.
type child struct {
	cmd    *exec.Cmd
	exited chan struct{} // closed when the process has ended
	logs   *testsystem.Buffer
}

// startChild runs a real worker process configured like cfg, entirely
// through the environment, trusting the Graph double through SSL_CERT_FILE
// as a production worker would trust a private CA.
func startChild(t *testing.T, s *testsystem.System, cfg service.Config) *child {
	t.Helper()
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, s.GS.CACertPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	bin, err := workerBinary()
	if err != nil {
		t.Fatalf("build the worker: %v", err)
	}
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(),
		"SSL_CERT_FILE="+caFile,
		"NATS_URL="+cfg.NATS.URL,
		"AZURE_TENANT_ID="+cfg.Credential.TenantID,
		"AZURE_CLIENT_ID="+cfg.Credential.ClientID,
		"AZURE_CLIENT_SECRET="+cfg.Credential.ClientSecret,
		"AZURE_AUTHORITY_HOST="+cfg.Credential.AuthorityHost,
		"GRAPH_BASE_URL="+cfg.GraphURL,
		"RECOVER_TENANTS="+strings.Join(cfg.Tenants, ","),
		"RECOVER_CONCURRENCY="+fmt.Sprint(cfg.Concurrency),
		"RECOVER_RATE_LIMIT="+cfg.Rate.String(),
		"RECOVER_LEASE="+cfg.Lease.String(),
		"RECOVER_ACK_WAIT="+cfg.AckWait.String(),
		"RECOVER_HTTP_ADDR=",
		"RECOVER_WORKER_NAME="+cfg.Name,
	)
	logs := &testsystem.Buffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &child{cmd: cmd, exited: make(chan struct{}), logs: logs}
	go func() { _ = cmd.Wait(); close(c.exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-c.exited
		if t.Failed() {
			t.Logf("child %s log:\n%s", cfg.Name, logs.String())
		}
	})
	return c
}

func TestKilledWorkersJobsAreCompletedByAnother(t *testing.T) {
	// Slow Graph: when the child dies, some calls have been performed by
	// Graph but not yet recorded — the documented crash window.
	sys := testsystem.Start(t, graphsim.Config{Latency: 400 * time.Millisecond})
	childCfg := sys.Config("doomed")
	childCfg.Concurrency = 16
	childCfg.Lease = 2 * time.Second
	child := startChild(t, sys, childCfg)

	const n = 60
	for i := range n {
		sys.Submit("batch", wire.Job{ID: fmt.Sprintf("k-%02d", i), ManagedDeviceID: testsystem.DeviceN(i)})
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	go func() { <-child.exited; cancel() }()
	if err := sys.GS.WaitCalls(ctx, 20); err != nil {
		t.Fatalf("the child made too few calls before it ended or timed out: %v", err)
	}
	if err := child.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-child.exited

	survivor := sys.Config("survivor")
	survivor.Lease = 2 * time.Second
	survivor.Concurrency = 16
	sys.StartWorker(survivor)
	results := sys.Results("", n, 90*time.Second)

	uncertain := 0
	for i := range n {
		id := fmt.Sprintf("k-%02d", i)
		device := testsystem.DeviceN(i)
		r, ok := results[id]
		if !ok || r.Status != wire.Succeeded {
			t.Errorf("%s: %+v", id, r)
			continue
		}
		performed := sys.GS.Performed(device)
		if r.Uncertain {
			uncertain++
		}
		if performed > 1 && !r.Uncertain {
			t.Errorf("%s: graph performed the action %d times and the result is not marked uncertain", id, performed)
		}
		if performed == 0 {
			t.Errorf("%s: succeeded without the action being performed", id)
		}
	}
	t.Logf("%d jobs, %d results marked uncertain (in flight when the worker was killed)", n, uncertain)
	sys.AssertJobsStreamEmpty()
}
