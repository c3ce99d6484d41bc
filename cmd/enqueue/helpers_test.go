package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/recoverpasscode/recoverpasscode/internal/testsystem"
	"github.com/recoverpasscode/recoverpasscode/ratelimit"
	"github.com/recoverpasscode/recoverpasscode/service"
)

// invocation is one run of the command, as a person would type it.
type invocation struct {
	code           int
	stdout, stderr string
}

// enqueue runs the command in process against the system's NATS.
func enqueue(ctx context.Context, t testing.TB, sys *testsystem.System, args ...string) invocation {
	t.Helper()
	var out, errOut bytes.Buffer
	if sys != nil {
		args = append(args, "--nats-url", sys.NS.URL())
	}
	code := run(ctx, args, &out, &errOut)
	return invocation{code: code, stdout: out.String(), stderr: errOut.String()}
}

func (inv invocation) String() string {
	return fmt.Sprintf("exit %d\n--- stdout\n%s--- stderr\n%s", inv.code, inv.stdout, inv.stderr)
}

// fastWorker is a worker configuration that lets the Graph double go as
// fast as the machine allows. Its lease, ack wait and attempt timeout are
// the production defaults rather than the test system's short ones:
// thousands of jobs on a loaded machine under -race may take longer than a
// short lease, and a takeover, like a retry after a call that timed out,
// would call Graph again (an uncertain result, as documented).
func fastWorker(sys *testsystem.System, name string) service.Config {
	cfg := sys.Config(name)
	cfg.Rate = ratelimit.Unlimited
	cfg.Concurrency = 64
	cfg.Lease = 30 * time.Second
	cfg.AckWait = 30 * time.Second
	cfg.AttemptTimeout = 30 * time.Second
	cfg.LogLevel = "warn"
	return cfg
}

// writeFile writes a test file and returns its path.
func writeFile(t testing.TB, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// devicesCSV is a CSV of n devices numbered from first.
func devicesCSV(first, n int) string {
	var b strings.Builder
	b.WriteString("managedDeviceId,ticket\n")
	for i := first; i < first+n; i++ {
		fmt.Fprintf(&b, "%s,CHG%d\n", testsystem.DeviceN(i), i)
	}
	return b.String()
}

// controlChars lists the control characters other than newline in s.
func controlChars(s string) []rune {
	var out []rune
	for _, r := range s {
		if r != '\n' && unicode.IsControl(r) {
			out = append(out, r)
		}
	}
	return out
}

// jobsStored is the number of messages in the jobs stream.
func jobsStored(t testing.TB, sys *testsystem.System) uint64 {
	t.Helper()
	s, err := sys.JS.Stream(t.Context(), sys.Names.JobsStream())
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

// batchName finds the batch name the command printed.
func batchName(t testing.TB, stdout string) string {
	t.Helper()
	for _, line := range strings.Split(stdout, "\n") {
		if rest, ok := strings.CutPrefix(line, "batch "); ok {
			name, _, _ := strings.Cut(rest, " ")
			return strings.TrimSuffix(name, ":")
		}
	}
	t.Fatalf("no batch name in:\n%s", stdout)
	return ""
}
