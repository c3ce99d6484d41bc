package testsystem

import (
	"context"
	"encoding/json"
	"os"
	"testing"
	"time"

	"github.com/recoverpasscode/recoverpasscode/service"
)

// RunWorker runs a worker in process, on its own NATS connection, until
// the test ends; its log is kept in the returned buffer. At the end it is
// stopped softly, and a stop that fails or takes longer than stopWithin
// fails the test.
//
// The stop begins when the test's context ends, just before its cleanups
// run, so that all of a test's workers stop at once: a soft stop waits out
// the worker's pending pull (up to a second), which one worker after the
// other would pay in turn.
func RunWorker(t testing.TB, cfg service.Config, stopWithin time.Duration) *Buffer {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	logs := &Buffer{}
	done := make(chan error, 1)
	go func() { done <- service.Run(ctx, ctx, cfg, logs) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("worker %s: %v", cfg.Name, err)
			}
		case <-time.After(stopWithin):
			t.Errorf("worker %s did not stop", cfg.Name)
		}
	})
	return logs
}

// Retry runs op, each try with a 2 s deadline, every 100 ms until it
// succeeds, and fails the test with op's last error when ctx ends: while a
// NATS node is down or a leader is being elected, requests get no answer
// for a while.
func Retry(ctx context.Context, t testing.TB, what string, op func(context.Context) error) {
	t.Helper()
	for {
		opCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := op(opCtx)
		cancel()
		if err == nil {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s: %v", what, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// CacheSecrets returns the token values (access, refresh and ID tokens) an
// MSAL token cache file holds, so that a test can check none of them
// reaches a log.
func CacheSecrets(t testing.TB, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var sections map[string]map[string]struct {
		Secret string `json:"secret"`
	}
	if err := json.Unmarshal(b, &sections); err != nil {
		t.Fatalf("token cache %s is not JSON: %v", path, err)
	}
	var out []string
	for _, entries := range sections {
		for _, e := range entries {
			if e.Secret != "" {
				out = append(out, e.Secret)
			}
		}
	}
	return out
}
