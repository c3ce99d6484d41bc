package console

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/recoverpasscode/recoverpasscode/batch"
	"github.com/recoverpasscode/recoverpasscode/devserver"
	"github.com/recoverpasscode/recoverpasscode/devserver/devservertest"
	"github.com/recoverpasscode/recoverpasscode/dlq"
	"github.com/recoverpasscode/recoverpasscode/queue"
	"github.com/recoverpasscode/recoverpasscode/ratelimit"
	"github.com/recoverpasscode/recoverpasscode/wire"
)

// The NATS users of the console's tests: the console runs as user
// "console" with NATSPermissions alone, as deploy/nats/accounts.conf
// grants it (deploy's tests keep the two equal); the test itself and its
// workers connect without credentials, as "admin", with every right.
const (
	consoleUser     = "console"
	consolePassword = "console-test-password"
	consoleInbox    = "_INBOX.console"
)

// LeastPrivilege is the configuration of a test's NATS server that
// enforces the console user's permissions.
func LeastPrivilege() devserver.Config {
	p := NATSPermissions("", consoleInbox)
	return devserver.Config{
		NoAuthUser: "admin",
		Users: []*server.User{
			{Username: "admin", Password: "admin-test-password"},
			{Username: consoleUser, Password: consolePassword, Permissions: &server.Permissions{
				Publish:   &server.SubjectPermission{Allow: p.Publish, Deny: p.DenyPublish},
				Subscribe: &server.SubjectPermission{Allow: p.Subscribe},
			}},
		},
	}
}

// ConnectAsConsole connects to url as the console's user, as cmd/gateway
// does (NATS_USER=console, NATS_INBOX_PREFIX=_INBOX.console). The test
// fails at its end if the server refused the connection anything: a
// permission the console uses and NATSPermissions lacks.
func ConnectAsConsole(t *testing.T, url string) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	var mu sync.Mutex
	var refused []string
	nc, err := nats.Connect(url, nats.UserInfo(consoleUser, consolePassword), nats.CustomInboxPrefix(consoleInbox),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			if strings.Contains(strings.ToLower(err.Error()), "permissions violation") {
				mu.Lock()
				refused = append(refused, err.Error())
				mu.Unlock()
			}
		}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = nc.Flush()
		nc.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, r := range refused {
			t.Errorf("the server refused the console (add it to NATSPermissions and accounts.conf if the console needs it): %s", r)
		}
	})
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}

// TestPagesReadAsTheConsoleUser reads every page as the console's NATS
// user on the paths the browser test does not take: a batch with a job
// still queued (counted by gets on the jobs stream), and a console without
// the history index, or a result without a tenant, whose job page reads
// the audit stream through a consumer of its own.
func TestPagesReadAsTheConsoleUser(t *testing.T) {
	const device = "2d6a3d0e-8f5c-4d7a-9b1e-000000000007"
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ns := devservertest.StartConfig(t, LeastPrivilege())
	nc, err := nats.Connect(ns.URL()) // the test's, with every right
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, _ := jetstream.New(nc)
	names := wire.Names{}
	if _, err := (queue.Setup{}).Ensure(ctx, js); err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateKeyValue(ctx, ratelimit.BucketConfig(names.LimitsBucket(), 1)); err != nil {
		t.Fatal(err)
	}
	queued := wire.Job{ID: "lp-0001", ManagedDeviceID: device, ReplyTo: batch.ResultSubject(names, "batch", "lp", "lp-0001")}
	if _, err := dlq.PublishJob(ctx, js, names.Jobs("batch"), &queued); err != nil {
		t.Fatal(err)
	}
	publish := func(subject string, v any) {
		t.Helper()
		data, _ := json.Marshal(v)
		if _, err := js.Publish(ctx, subject, data); err != nil {
			t.Fatal(err)
		}
	}
	publish(names.Result("batch", "lp.lp-0002"), wire.Result{JobID: "lp-0002", Source: "batch", ManagedDeviceID: device, Status: wire.Succeeded, Attempts: 1})
	publish(names.Result("ticketing", "t-1"), wire.Result{JobID: "t-1", Source: "ticketing", ManagedDeviceID: device, Status: wire.Succeeded, Attempts: 1})
	at := time.Now().UTC()
	publish(names.Audit("ticketing", "", device, at), wire.AuditEvent{Kind: wire.KindGraphCall, JobID: "t-1", Source: "ticketing", ManagedDeviceID: device, Worker: "worker-lp", At: at})

	_, consoleJS := ConnectAsConsole(t, ns.URL())
	s, err := New(Config{JetStream: consoleJS, TenantID: "33333333-3333-4333-8333-333333333333", ClientID: "77777777-7777-4777-8777-777777777777", BaseURL: "http://127.0.0.1:8080"})
	if err != nil {
		t.Fatal(err)
	}
	c, _ := cookieOf(t, s, RoleRead)
	get := func(path string) string {
		t.Helper()
		r := httptest.NewRequest(http.MethodGet, path, nil)
		r.AddCookie(c)
		w := httptest.NewRecorder()
		s.ServeHTTP(w, r)
		if w.Code != http.StatusOK {
			t.Errorf("GET %s: %d\n%s", path, w.Code, w.Body.String())
		}
		return w.Body.String()
	}
	for _, path := range []string{"/", "/live/overview", "/jobs", "/jobs?source=ticketing", "/batches", "/batches/batch/lp/results.csv",
		"/dlq", "/dlq/replay?source=batch", "/devices", "/held"} {
		get(path)
	}
	if page := get("/live/batches/batch/lp"); !strings.Contains(page, `<span id="batch-queued">1</span>`) {
		t.Errorf("the batch page does not count its queued job:\n%s", page)
	}
	if page := get("/jobs/t-1"); !strings.Contains(page, "worker-lp") {
		t.Errorf("the job page does not show its Graph call from the audit stream:\n%s", page)
	}
}
