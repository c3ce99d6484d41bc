package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/recoverpasscode/recoverpasscode/graph/graphsim"
	"github.com/recoverpasscode/recoverpasscode/internal/testsystem"
)

// TestProgressOutput: off a terminal the progress is plain lines and no
// output holds a control character; --progress bar redraws one line.
func TestProgressOutput(t *testing.T) {
	t.Parallel()
	sys := testsystem.Start(t, graphsim.Config{Limit: -1})
	sys.StartWorker(fastWorker(sys, "w1"))
	for _, tc := range []struct {
		name, progress string
		wantStderr     []string
		plain          bool
	}{
		{"auto off a terminal", "auto", []string{"progress: 20/20 100% | 20 succeeded, 0 did not"}, true},
		{"lines", "lines", []string{"progress: 0/20   0%", "progress: 20/20 100%"}, true},
		{"bar", "bar", []string{"\r[--------------------] 0/20   0%", "\r[####################] 20/20 100%  ok 20  not ok 0", "\x1b[K"}, false},
		{"none", "none", nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			name := "p-" + tc.progress
			file := writeFile(t, "devices.csv", devicesCSV(100, 20))
			inv := enqueue(t.Context(), t, sys, "--file", file, "--batch", name, "--wait", "--progress", tc.progress)
			if inv.code != exitOK {
				t.Fatalf("%s", inv)
			}
			for _, want := range tc.wantStderr {
				if !strings.Contains(inv.stderr, want) {
					t.Errorf("stderr lacks %q:\n%q", want, inv.stderr)
				}
			}
			if tc.progress == "none" && inv.stderr != "" {
				t.Errorf("--progress none wrote %q", inv.stderr)
			}
			if c := controlChars(inv.stdout); len(c) > 0 {
				t.Errorf("stdout holds control characters %q:\n%s", c, inv.stdout)
			}
			if c := controlChars(inv.stderr); tc.plain && len(c) > 0 {
				t.Errorf("stderr holds control characters %q:\n%s", c, inv.stderr)
			}
		})
	}
}

// TestInterruptAndResume: stopping the wait (Ctrl-C) leaves the batch
// going and says how to follow it again; running the same command again
// collects every result, and no device is recovered twice.
func TestInterruptAndResume(t *testing.T) {
	t.Parallel()
	const rows = 60
	sys := testsystem.Start(t, graphsim.Config{Limit: -1, Latency: 20 * time.Millisecond})
	cfg := fastWorker(sys, "w1")
	cfg.Concurrency = 2
	sys.StartWorker(cfg)
	file := writeFile(t, "devices.csv", devicesCSV(200, rows))

	ctx, interrupt := context.WithCancel(t.Context())
	done := make(chan invocation, 1)
	go func() { done <- enqueue(ctx, t, sys, "--file", file, "--wait", "--batch", "resume") }()
	if err := sys.GS.WaitCalls(t.Context(), 5); err != nil {
		t.Fatal(err)
	}
	interrupt()
	first := <-done
	if first.code != exitInterrupted {
		t.Fatalf("interrupted run: %s", first)
	}
	for _, want := range []string{"still pending: the batch is not cancelled, the workers go on", "run the same command again (nothing is submitted twice)", "enqueue results --batch resume"} {
		if !strings.Contains(first.stdout, want) {
			t.Errorf("interrupted run lacks %q:\n%s", want, first)
		}
	}

	again := enqueue(t.Context(), t, sys, "--file", file, "--wait", "--batch", "resume")
	if again.code != exitOK {
		t.Fatalf("resumed run: %s", again)
	}
	if !strings.Contains(again.stdout, "with a result\n  succeeded  60") {
		t.Errorf("resumed run's summary:\n%s", again.stdout)
	}
	for i := 200; i < 200+rows; i++ {
		if n := sys.GS.Performed(testsystem.DeviceN(i)); n != 1 {
			t.Errorf("device %d recovered %d times", i, n)
		}
	}
}

// TestTimeout: --timeout ends the wait with exit 1 and the same advice.
func TestTimeout(t *testing.T) {
	t.Parallel()
	sys := testsystem.Start(t, graphsim.Config{}) // no worker: nothing finishes
	file := writeFile(t, "devices.csv", devicesCSV(300, 3))
	inv := enqueue(t.Context(), t, sys, "--file", file, "--wait", "--timeout", "300ms")
	if inv.code != exitFailed || !strings.Contains(inv.stderr, "--timeout 300ms passed before every row had a result") || !strings.Contains(inv.stdout, "3 row(s) still pending") {
		t.Errorf("%s", inv)
	}
}
