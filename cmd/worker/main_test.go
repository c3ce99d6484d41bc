package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// workerBinary builds this command once per test run, without the race
// detector, so tests can start real worker processes (and kill them) that
// run at production speed: timing-sensitive tests such as the shared rate
// limit measure the worker, not the race detector's overhead.
var workerBinary = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "recoverpasscode-worker-bin")
	if err != nil {
		return "", err
	}
	builtIn = dir
	bin := filepath.Join(dir, "worker")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	return bin, cmd.Run()
})

// builtIn is the directory of the built worker, once built.
var builtIn string

// childEnv makes the test binary run the worker's main instead of the
// tests, for tests that need a worker process built with their own
// instrumentation.
const childEnv = "RECOVERPASSCODE_TEST_RUN_WORKER"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		main()
		return
	}
	code := m.Run()
	if builtIn != "" {
		os.RemoveAll(builtIn)
	}
	os.Exit(code)
}
