// Package devservertest starts real nats-servers for tests: one embedded
// server with JetStream per test, or a JetStream cluster whose nodes a
// test stops and restarts. It is to devserver what net/http/httptest is to
// net/http: only tests import it, so the test scaffolding (and the testing
// package) stays out of the production binaries.
package devservertest

import (
	"testing"

	"github.com/recoverpasscode/recoverpasscode/devserver"
)

// Start starts a server on a random loopback port with its data in a
// temporary directory, and shuts it down when the test ends.
func Start(tb testing.TB) *devserver.Server {
	tb.Helper()
	return StartConfig(tb, devserver.Config{})
}

// StartConfig starts a server as Start does, with cfg (its StoreDir, when
// empty, a temporary directory).
func StartConfig(tb testing.TB, cfg devserver.Config) *devserver.Server {
	tb.Helper()
	if cfg.StoreDir == "" {
		cfg.StoreDir = tb.TempDir()
	}
	s, err := devserver.Start(cfg)
	if err != nil {
		tb.Fatalf("start embedded nats-server: %v", err)
	}
	tb.Cleanup(s.Shutdown)
	return s
}
