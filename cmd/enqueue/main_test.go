package main

import (
	"regexp"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/recoverpasscode/recoverpasscode/graph/graphsim"
	"github.com/recoverpasscode/recoverpasscode/internal/testsystem"
)

// TestOneJob: the single-job mode keeps working as before: a result line,
// and the same id sent again is stored once and answered with the stored
// result.
func TestOneJob(t *testing.T) {
	t.Parallel()
	sys := testsystem.Start(t, graphsim.Config{})
	sys.StartWorker(sys.Config("w1"))
	id := uuid.NewString()
	for i, want := range []string{"succeeded: device " + testsystem.Device + ", job " + id, "succeeded: device " + testsystem.Device + ", job " + id} {
		inv := enqueue(t.Context(), t, sys, "--device", testsystem.Device, "--id", id, "--ticket", "INC1", "--wait")
		if inv.code != exitOK || !strings.HasPrefix(inv.stdout, want) {
			t.Errorf("run %d: %s", i+1, inv)
		}
	}
	if n := sys.GS.Performed(testsystem.Device); n != 1 {
		t.Errorf("device recovered %d times", n)
	}
	inv := enqueue(t.Context(), t, sys, "--device", "not-a-guid")
	if inv.code != exitFailed || !strings.Contains(inv.stderr, `invalid managedDeviceId "not-a-guid"`) {
		t.Errorf("bad device: %s", inv)
	}
}

// TestHelpIsComplete: every subcommand's --help exits 0 and its usage
// lines name every flag it defines (the connection flags are shared and
// listed below the usage by the flag package).
func TestHelpIsComplete(t *testing.T) {
	shared := map[string]bool{"prefix": true}
	for _, tc := range []struct{ args []string }{
		{[]string{"--help"}},
		{[]string{"results", "--help"}},
		{[]string{"dlq", "list", "--help"}},
		{[]string{"dlq", "replay", "--help"}},
		{[]string{"deliveries", "list", "--help"}},
		{[]string{"deliveries", "redeliver", "--help"}},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			inv := enqueue(t.Context(), t, nil, tc.args...)
			if inv.code != exitOK {
				t.Fatalf("%s", inv)
			}
			usage, flags, ok := strings.Cut(inv.stderr, "Flags:\n")
			if !ok {
				t.Fatalf("no flags listed:\n%s", inv.stderr)
			}
			for _, m := range regexp.MustCompile(`(?m)^  -([a-z-]+)`).FindAllStringSubmatch(flags, -1) {
				name := m[1]
				if strings.HasPrefix(name, "nats-") || shared[name] {
					continue
				}
				if !strings.Contains(usage, "--"+name) {
					t.Errorf("usage does not mention --%s:\n%s", name, usage)
				}
			}
		})
	}
	if inv := enqueue(t.Context(), t, nil, "dlq", "--help"); inv.code != exitOK || !strings.Contains(inv.stdout, "enqueue dlq replay") {
		t.Errorf("dlq --help: %s", inv)
	}
}
