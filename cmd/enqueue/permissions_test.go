package main

import (
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/recoverpasscode/recoverpasscode/follow"
	"github.com/recoverpasscode/recoverpasscode/graph/graphsim"
	"github.com/recoverpasscode/recoverpasscode/internal/testsystem"
	"github.com/recoverpasscode/recoverpasscode/wire"
)

// TestBatchUserPermissions runs a batch as the NATS user "batch" of
// deploy/nats/accounts.conf, against a worker logged in as "worker", each
// with its own inbox prefix (--nats-inbox-prefix _INBOX.batch; the worker's
// _INBOX.worker): the least privilege a source has is enough to submit a
// file, follow it, and read its results later; the DLQ is not the source's
// to read.
func TestBatchUserPermissions(t *testing.T) {
	for _, env := range []string{"NATS_WORKER_PASSWORD", "NATS_TICKETING_PASSWORD", "NATS_BATCH_PASSWORD", "NATS_AUTOMATION_PASSWORD", "NATS_OPERATOR_PASSWORD", "NATS_GATEWAY_PASSWORD", "NATS_CONSOLE_PASSWORD", "NATS_SYS_PASSWORD"} {
		t.Setenv(env, strings.ToLower(env[5:10])+"-pw-0123456789")
	}
	url := startDeployServer(t)
	sys := testsystem.Start(t, graphsim.Config{Limit: -1}) // for its Graph double
	cfg := fastWorker(sys, "w1")
	cfg.NATS.URL, cfg.NATS.User, cfg.NATS.Password = url, "worker", "worke-pw-0123456789"
	cfg.NATS.InboxPrefix = "_INBOX.worker"
	cfg.Follow.Schedule = follow.Schedule{First: 100 * time.Millisecond, Max: time.Second, For: 10 * time.Second}
	sys.StartWorker(cfg)
	waitForStreams(t, url, "worker", "worke-pw-0123456789")

	as := []string{"--nats-url", url, "--nats-user", "batch", "--nats-password", "batch-pw-0123456789", "--nats-inbox-prefix", "_INBOX.batch"}
	file := writeFile(t, "devices.csv", devicesCSV(500, 25))
	run := func(args ...string) invocation { return enqueue(t.Context(), t, nil, append(args, as...)...) }

	first := run("--file", file, "--batch", "perm", "--wait")
	if first.code != exitOK || !strings.Contains(first.stdout, "  succeeded  25\n") {
		t.Fatalf("batch as user batch: %s", first)
	}
	again := run("--file", file, "--batch", "perm", "--wait")
	if again.code != exitOK || !strings.Contains(again.stdout, "25 row(s) already have a result") {
		t.Errorf("re-run as user batch: %s", again)
	}
	later := run("results", "--batch", "perm")
	if later.code != exitOK || !strings.Contains(later.stdout, "batch perm: 25 results") {
		t.Errorf("results as user batch: %s", later)
	}
	if dlq := run("dlq", "list"); dlq.code != exitFailed || !strings.Contains(dlq.stderr, "permissions violation") {
		t.Errorf("dlq list as user batch: %s", dlq)
	}
	// Following a job and reading its confirmation are within a source's
	// rights, and a worker's.
	followed := run("--device", testsystem.DeviceN(600), "--source", "batch", "--follow", "--wait", "--json")
	if followed.code != exitOK || !strings.Contains(followed.stdout, `"state":"done"`) {
		t.Errorf("--follow --wait as user batch: %s", followed)
	}
	other := run("--file", file, "--batch", "perm", "--source", "ticketing", "--wait", "--timeout", "10s")
	if other.code != exitFailed || !strings.Contains(other.stderr, "permissions violation") {
		t.Errorf("batch as user batch for source ticketing: %s", other)
	}
}

// waitForStreams waits for the worker to have set up the streams.
func waitForStreams(t *testing.T, url, user, password string) {
	t.Helper()
	nc, err := nats.Connect(url, nats.UserInfo(user, password), nats.CustomInboxPrefix("_INBOX."+user))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	names := wire.Names{}
	ok := testsystem.Eventually(20*time.Second, func() bool {
		_, err := js.Stream(t.Context(), names.ResultsStream())
		return err == nil
	})
	if !ok {
		t.Fatal("the worker did not set up the streams")
	}
}

// startDeployServer runs deploy/nats/dev.conf on a random port with a
// temporary store, and returns its URL.
func startDeployServer(t *testing.T) string {
	t.Helper()
	opts, err := server.ProcessConfigFile("../../deploy/nats/dev.conf")
	if err != nil {
		t.Fatal(err)
	}
	opts.Port = server.RANDOM_PORT
	opts.HTTPHost, opts.HTTPPort = "", 0
	opts.StoreDir = t.TempDir()
	opts.NoLog, opts.NoSigs = true, true
	srv, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		t.Fatal("nats-server not ready")
	}
	t.Cleanup(func() {
		srv.Shutdown()
		srv.WaitForShutdown()
	})
	return srv.ClientURL()
}
