package service_test

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/recoverpasscode/recoverpasscode/devserver"
	"github.com/recoverpasscode/recoverpasscode/graph/graphsim"
	"github.com/recoverpasscode/recoverpasscode/internal/testsystem"
	"github.com/recoverpasscode/recoverpasscode/service"
)

// TestWorkerStartedBeforeNATSWaitsForIt: a worker may start before its
// NATS server. It retries setting up JetStream with backoff, saying so in
// the log, starts once the server is there, and a stop while it waits
// returns at once with the context's error.
func TestWorkerStartedBeforeNATSWaitsForIt(t *testing.T) {
	t.Parallel()
	s := testsystem.Start(t, graphsim.Config{}) // for the Graph double; its NATS is not this worker's
	addr := testsystem.FreeAddr(t)
	_, portText, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	port, err := strconv.Atoi(portText)
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.Config("early")
	cfg.NATS.URL = "nats://" + addr

	t.Run("stopped before NATS is there", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- service.Run(ctx, ctx, cfg, &testsystem.Buffer{}) }()
		cancel()
		select {
		case err := <-done:
			if !errors.Is(err, context.Canceled) {
				t.Errorf("Run returned %v, want context.Canceled", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Run did not return after its context was cancelled")
		}
	})

	t.Run("starts once NATS does", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		logs := &testsystem.Buffer{}
		done := make(chan error, 1)
		go func() { done <- service.Run(ctx, ctx, cfg, logs) }()
		if !testsystem.Eventually(20*time.Second, func() bool { return strings.Contains(logs.String(), "cannot set up JetStream yet") }) {
			t.Fatalf("no retry logged while NATS is missing:\n%s", logs)
		}
		ns, err := devserver.Start(devserver.Config{Port: port, StoreDir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		defer ns.Shutdown()
		if !testsystem.Eventually(30*time.Second, func() bool { return strings.Contains(logs.String(), "worker started") }) {
			t.Fatalf("worker did not start once NATS was up:\n%s", logs)
		}
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run after a clean stop: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("worker did not stop")
		}
	})
}
