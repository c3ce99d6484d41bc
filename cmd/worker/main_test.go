package main

import (
	"os"
	"testing"
)

// childEnv makes the test binary run the worker's main instead of the
// tests, so tests can start real worker processes (and kill them).
const childEnv = "RECOVERPASSCODE_TEST_RUN_WORKER"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}
