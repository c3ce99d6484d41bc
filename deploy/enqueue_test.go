package deploy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/recoverpasscode/recoverpasscode/graph/graphsim"
	"github.com/recoverpasscode/recoverpasscode/internal/testsystem"
	"github.com/recoverpasscode/recoverpasscode/service"
)

// TestOperatorRunsEnqueue runs the real enqueue command against
// nats/dev.conf and a real worker logged in as "worker": sources submit as
// their own users, Graph cannot find two devices at first, and the operator
// then lists every source's dead letters, replays them to their sources and
// reads a source's results, without one refusal. This proves the
// operator's permissions against the JetStream requests enqueue really
// makes, not against a copy of them. Every client, the worker included,
// creates its inboxes under its user's prefix (NATS_INBOX_PREFIX, which
// enqueue reads here from the environment), as accounts.conf requires.
func TestOperatorRunsEnqueue(t *testing.T) {
	passwords := setPasswords(t)
	enqueue := buildEnqueue(t)
	url := startFromConfig(t, filepath.Join("nats", "dev.conf"), nil).ClientURL()
	sys := testsystem.Start(t, graphsim.Config{Limit: -1}) // for its Graph double
	missing := map[string]bool{testsystem.DeviceN(2): true, testsystem.DeviceN(9): true}
	for d := range missing {
		sys.GS.SetDeviceMissing(d)
	}
	logs := startWorker(t, sys, url, passwords["worker"])
	as := func(user string, args ...string) run {
		env := []string{"NATS_PASSWORD=" + passwords[user], "NATS_INBOX_PREFIX=" + inboxPrefix(user)}
		return enqueue(t, env, append(args, "--nats-url", url, "--nats-user", user)...)
	}

	devices := filepath.Join(t.TempDir(), "devices.csv")
	csv := "managedDeviceId\n" + testsystem.DeviceN(1) + "\n" + testsystem.DeviceN(2) + "\n" + testsystem.DeviceN(3) + "\n"
	if err := os.WriteFile(devices, []byte(csv), 0o600); err != nil {
		t.Fatal(err)
	}
	// Exit status 2: a job did not succeed.
	if r := as("batch", "--file", devices, "--batch", "ops", "--wait", "--progress", "none"); r.code != 2 || !strings.Contains(r.stdout, "  failed     1\n") {
		t.Fatalf("batch as user batch, one device missing: %s", r)
	}
	if r := as("ticketing", "--device", testsystem.DeviceN(9), "--source", "ticketing", "--wait"); r.code != 2 {
		t.Fatalf("one job as user ticketing, its device missing: %s", r)
	}

	list := as("operator", "dlq", "list")
	for _, want := range []string{"2 dead letter(s)", "  batch  ", "  ticketing  ", "ResourceNotFound"} {
		if list.code != 0 || !strings.Contains(list.stdout, want) {
			t.Errorf("dlq list as operator lacks %q: %s", want, list)
		}
	}
	one := as("operator", "dlq", "list", "--source", "ticketing", "--json")
	var letter struct{ Source string }
	if err := json.Unmarshal([]byte(one.stdout), &letter); one.code != 0 || err != nil || letter.Source != "ticketing" {
		t.Errorf("dlq list --source ticketing --json as operator: %v: %s", err, one)
	}

	for d := range missing {
		sys.GS.SetDevicePresent(d)
	}
	for source, args := range map[string][]string{
		"batch":     {"dlq", "replay", "--batch", "ops", "--new-key"},
		"ticketing": {"dlq", "replay", "--source", "ticketing", "--new-key"},
	} {
		r := as("operator", args...)
		if r.code != 0 || !strings.Contains(r.stdout, " on recoverpasscode.jobs."+source+" (new key ") {
			t.Errorf("%s as operator: %s", strings.Join(args, " "), r)
		}
	}
	if !testsystem.Eventually(20*time.Second, func() bool {
		return sys.GS.Performed(testsystem.DeviceN(2)) == 1 && sys.GS.Performed(testsystem.DeviceN(9)) == 1
	}) {
		t.Fatal("the replayed jobs did not recover their devices")
	}

	var results run
	if !testsystem.Eventually(20*time.Second, func() bool {
		results = as("operator", "results", "--batch", "ops", "--source", "batch")
		return results.code == 0
	}) || !strings.Contains(results.stdout, "  succeeded  3\n") {
		t.Errorf("results of batch ops as operator, after the replay: %s", results)
	}
	expectNoWorkerDenials(t, logs)
}

// startWorker runs a real worker in process against the server at url as
// the deploy files configure it: logged in as "worker" with its inbox
// prefix, answering only each source's own inboxes. sys's Graph double
// answers its calls. It returns once the worker has declared its streams
// and consumer, with the worker's log.
func startWorker(t *testing.T, sys *testsystem.System, url, password string) *testsystem.Buffer {
	t.Helper()
	return startWorkerWith(t, sys, url, password, func(*service.Config) {})
}

// startWorkerWith is startWorker with a change to the worker's
// configuration.
func startWorkerWith(t *testing.T, sys *testsystem.System, url, password string, change func(*service.Config)) *testsystem.Buffer {
	t.Helper()
	cfg := sys.Config("w1")
	change(&cfg)
	cfg.NATS.URL, cfg.NATS.User, cfg.NATS.Password = url, "worker", password
	cfg.NATS.InboxPrefix = inboxPrefix("worker")
	cfg.InboxPerSource = true
	cfg.LogLevel = "warn"
	logs := sys.StartWorker(cfg)
	w := connect(t, url, "worker", password)
	ready := func() bool {
		_, err := w.js.Consumer(t.Context(), jobsStream, consumerName)
		return err == nil
	}
	if !testsystem.Eventually(20*time.Second, ready) {
		t.Fatalf("the worker did not set up its streams and consumer:\n%s", logs)
	}
	return logs
}

// expectNoWorkerDenials proves that the server refused the worker nothing
// so far: the worker logs every NATS error it is told of.
func expectNoWorkerDenials(t *testing.T, logs *testsystem.Buffer) {
	t.Helper()
	if l := logs.String(); strings.Contains(strings.ToLower(l), "permissions violation") {
		t.Errorf("the server refused the worker a request:\n%s", l)
	}
}

// run is one run of the enqueue command.
type run struct {
	args           []string
	code           int
	stdout, stderr string
}

func (r run) String() string {
	return fmt.Sprintf("enqueue %s: exit %d\n--- stdout\n%s--- stderr\n%s", strings.Join(r.args, " "), r.code, r.stdout, r.stderr)
}

// enqueueRunTimeout bounds one run of enqueue, which takes well under a
// second here; a run whose reads are refused would wait for its stall
// timeout instead.
const enqueueRunTimeout = 15 * time.Second

// buildEnqueue builds cmd/enqueue, with the race detector when this test
// runs with it (so the build reuses the test's compiled packages), and
// returns a function that runs it with env (NATS_PASSWORD=..., and any
// other variable) added to a clean environment, as an operator would. A
// run in which the server refused a request (enqueue's NATS error handler
// writes it to stderr) ends the test.
func buildEnqueue(t *testing.T) func(t *testing.T, env []string, args ...string) run {
	t.Helper()
	bin := buildCommand(t, "enqueue")
	base := ownEnv()
	return func(t *testing.T, env []string, args ...string) run {
		t.Helper()
		ctx, cancel := context.WithTimeout(t.Context(), enqueueRunTimeout)
		defer cancel()
		var stdout, stderr bytes.Buffer
		cmd := exec.CommandContext(ctx, bin, args...)
		cmd.Env, cmd.Stdout, cmd.Stderr = append(slices.Clip(base), env...), &stdout, &stderr
		err := cmd.Run()
		r := run{args: args, stdout: stdout.String(), stderr: stderr.String()}
		if ctx.Err() != nil && t.Context().Err() == nil {
			t.Fatalf("enqueue %s did not finish within %s\n--- stdout\n%s--- stderr\n%s", strings.Join(args, " "), enqueueRunTimeout, r.stdout, r.stderr)
		}
		var exit *exec.ExitError
		switch {
		case errors.As(err, &exit):
			r.code = exit.ExitCode()
		case err != nil:
			t.Fatalf("run enqueue: %v", err)
		}
		if strings.Contains(strings.ToLower(r.stderr), "permissions violation") {
			t.Fatalf("the server refused a request: %s", r)
		}
		return r
	}
}

// buildCommand builds cmd/<name> into a temporary directory, with the
// race detector when this test runs with it (so the build reuses the
// test's compiled packages), and returns the binary's path.
func buildCommand(t *testing.T, name string) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command builds %s for this test: %v", name, err)
	}
	bin := filepath.Join(t.TempDir(), name)
	build := []string{"build", "-o", bin}
	if raceEnabled() {
		build = append(build, "-race")
	}
	cmd := exec.CommandContext(t.Context(), goTool, append(build, "github.com/recoverpasscode/recoverpasscode/cmd/"+name)...)
	cmd.Dir = ".." // the module's root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build %s: %v\n%s", name, err, out)
	}
	return bin
}

// ownEnv is this process's environment without the NATS and recoverpasscode
// settings, so that each run's flags and password alone say how enqueue
// connects.
// The race detector's second of sleep before a clean exit is turned off; a
// race it finds still shows as exit status 66.
func ownEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "NATS_") && !strings.HasPrefix(kv, "RECOVER_") && !strings.HasPrefix(kv, "GORACE=") {
			env = append(env, kv)
		}
	}
	return append(env, "GORACE="+strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
}

// raceEnabled reports whether this test binary was built with -race.
func raceEnabled() bool {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range info.Settings {
		if s.Key == "-race" {
			return s.Value == "true"
		}
	}
	return false
}
