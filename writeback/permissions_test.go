package writeback_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/recoverpasscode/recoverpasscode/queue"
	"github.com/recoverpasscode/recoverpasscode/wire"
	"github.com/recoverpasscode/recoverpasscode/writeback"
	"github.com/recoverpasscode/recoverpasscode/writeback/receiver"
)

// TestLeastPrivilege runs a deliverer as a NATS user holding exactly
// NATSPermissions, and an operator holding exactly OperatorPermissions:
// a result is delivered, a 410 is kept and disables its endpoint, the
// metrics are sampled, and the operator lists and redelivers the failure;
// the server refuses nothing along the way.
func TestLeastPrivilege(t *testing.T) {
	t.Parallel()
	gw := writeback.NATSPermissions("", "_INBOX.gateway")
	op := writeback.OperatorPermissions("", "_INBOX.operator")
	url := startServer(t, map[string]writeback.Permissions{"gateway": gw, "operator": op})

	_, adminJS := connectAs(t, url, "admin", "")
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if _, err := (queue.Setup{}).Ensure(ctx, adminJS); err != nil {
		t.Fatal(err)
	}
	denials := &denialLog{}
	_, gwJS := connectAs(t, url, "gateway", "_INBOX.gateway", nats.ErrorHandler(denials.record))

	secret := mustNewSecret(t)
	rcv := newReceiver(t, secret)
	var gone bool
	var mu sync.Mutex
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		g := gone
		mu.Unlock()
		if g {
			http.Error(w, "gone", http.StatusGone)
			return
		}
		rcv.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	logs := &syncWriter{w: &bytes.Buffer{}}
	cfg := testConfig(writeback.Source{Name: "ticketing", Webhooks: []writeback.Webhook{{Name: "hook", URL: srv.URL, Secret: secret}}})
	cfg.TLS = trusting(srv.Certificate())
	cfg.Logger = zerolog.New(logs)
	h := &harness{t: t, js: adminJS}
	d := h.start(gwJS, cfg)

	h.publish(sampleResult("job-perm-1", "INC1"))
	must(t, rcv.Wait(waitCtx(t), func(d []receiver.Delivery, _ int) bool { return len(d) == 1 }), "the delivery")
	mu.Lock()
	gone = true
	mu.Unlock()
	h.publish(sampleResult("job-perm-2", "INC1"))
	h.store = openStoreAs(t, url, "gateway", "_INBOX.gateway")
	h.failures(writeback.Filter{}, 1)
	h.eventually(func(context.Context) bool {
		return value(d.reg, "recoverpasscode_delivery_endpoint_disabled", "ticketing", "hook") == 1 &&
			value(d.reg, "recoverpasscode_delivery_failures_kept", "ticketing", "hook") == 1
	}, "the metrics sampled")

	mu.Lock()
	gone = false
	mu.Unlock()
	operator := openStoreAs(t, url, "operator", "_INBOX.operator")
	failed, err := operator.Failures(ctx, writeback.Filter{Source: "ticketing"})
	if err != nil || len(failed) != 1 {
		t.Fatalf("the operator lists %v, %v", failed, err)
	}
	if dis, err := operator.Disabled(ctx); err != nil || len(dis) != 1 {
		t.Fatalf("the operator lists disabled endpoints %v, %v", dis, err)
	}
	if _, err := operator.Redeliver(ctx, failed[0], "operator"); err != nil {
		t.Fatal(err)
	}
	must(t, rcv.Wait(waitCtx(t), func(d []receiver.Delivery, _ int) bool { return len(d) == 2 }), "the redelivery")
	h.failures(writeback.Filter{}, 0)

	if got := denials.all(); len(got) > 0 {
		t.Errorf("the server refused: %v", got)
	}
	if l := logs.String(); strings.Contains(l, "ermission") {
		t.Errorf("the deliverer logged a refusal:\n%s", l)
	}
}

// startServer starts a nats-server with JetStream whose users are admin
// (allowed everything) and one per entry of users, each with its
// permissions; every password is "pw-<user>".
func startServer(t *testing.T, users map[string]writeback.Permissions) string {
	t.Helper()
	opts := &server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true}
	opts.Users = append(opts.Users, &server.User{Username: "admin", Password: "pw-admin"})
	for name, p := range users {
		opts.Users = append(opts.Users, &server.User{Username: name, Password: "pw-" + name, Permissions: &server.Permissions{
			Publish:   &server.SubjectPermission{Allow: p.Publish, Deny: p.DenyPublish},
			Subscribe: &server.SubjectPermission{Allow: p.Subscribe},
		}})
	}
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

func connectAs(t *testing.T, url, user, inbox string, opts ...nats.Option) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	opts = append(opts, nats.UserInfo(user, "pw-"+user))
	if inbox != "" {
		opts = append(opts, nats.CustomInboxPrefix(inbox))
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}

func openStoreAs(t *testing.T, url, user, inbox string) *writeback.Store {
	t.Helper()
	_, js := connectAs(t, url, user, inbox)
	s, err := writeback.OpenStore(t.Context(), js, wire.Names{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// denialLog records the errors the server sends a connection.
type denialLog struct {
	mu   sync.Mutex
	errs []string
}

func (d *denialLog) record(_ *nats.Conn, _ *nats.Subscription, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.errs = append(d.errs, err.Error())
}

func (d *denialLog) all() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.errs...)
}

// syncWriter serializes writes to w.
type syncWriter struct {
	mu sync.Mutex
	w  interface {
		io.Writer
		String() string
	}
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

func (s *syncWriter) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.String()
}

// TestPermissionsDocumented: the package documentation lists exactly the
// subjects NATSPermissions returns.
func TestPermissionsDocumented(t *testing.T) {
	raw, err := os.ReadFile("doc.go")
	if err != nil {
		t.Fatal(err)
	}
	var documented []string
	in := false
	for _, line := range strings.Split(string(raw), "\n") {
		line = strings.TrimPrefix(line, "//")
		switch strings.TrimSpace(line) {
		case "publish:":
			in = true
			continue
		case "publish deny:":
			in = false
		}
		if in && strings.HasPrefix(line, "\t  ") {
			documented = append(documented, strings.TrimSpace(line))
		}
	}
	got := writeback.NATSPermissions("", "_INBOX.gateway")
	if strings.Join(documented, "\n") != strings.Join(got.Publish, "\n") {
		t.Errorf("doc.go lists:\n%s\nNATSPermissions returns:\n%s", strings.Join(documented, "\n"), strings.Join(got.Publish, "\n"))
	}
	if !strings.Contains(string(raw), "_INBOX.gateway.>") || got.Subscribe[0] != "_INBOX.gateway.>" {
		t.Errorf("subscribe %v", got.Subscribe)
	}
}
