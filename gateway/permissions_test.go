package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/recoverpasscode/recoverpasscode/internal/testsystem"
	"github.com/recoverpasscode/recoverpasscode/wire"
)

// TestLeastPrivilege runs the gateway as a NATS user allowed exactly
// NATSPermissions, and goes through every route that touches NATS: a
// missing permission fails a request or shows as a permissions violation.
func TestLeastPrivilege(t *testing.T) {
	h := newSystem(t, true)
	ns := restrictedServer(t, NATSPermissions("", "_INBOX.gateway"))

	cfg := h.sys.Config("w1")
	cfg.NATS.URL, cfg.NATS.User, cfg.NATS.Password = ns.ClientURL(), "worker", "w"
	testsystem.RunWorker(t, cfg, 15*time.Second)

	var mu sync.Mutex
	var violations []error
	h.start(ns.ClientURL(), h.sources,
		nats.UserInfo("gateway", "g"), nats.CustomInboxPrefix("_INBOX.gateway"),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			mu.Lock()
			defer mu.Unlock()
			violations = append(violations, err)
		}))
	testsystem.WaitReadyz(t, h.url[len("http://"):], http.StatusOK, 20*time.Second)

	if r := h.post("ticketing", jobBody(device(40), "ticket", "INC40"), "Prefer", "wait=20", "Idempotency-Key", "INC40"); r.status != http.StatusOK {
		t.Fatalf("submit and wait: %d %s", r.status, r.body)
	}
	r := h.post("ticketing", jobBody(device(41)))
	if r.status != http.StatusAccepted {
		t.Fatalf("submit: %d %s", r.status, r.body)
	}
	h.waitResult("ticketing", r.json(t)["jobId"].(string))
	if r := h.post("ticketing", jobBody(device(40), "ticket", "INC40"), "Idempotency-Key", "INC40"); r.status != http.StatusOK {
		t.Fatalf("a retry of a finished job: %d %s", r.status, r.body)
	}
	if r := h.get("ticketing", "/v1/jobs?ticket=INC40"); r.status != 200 || len(r.json(t)["jobs"].([]any)) != 1 {
		t.Fatalf("list: %d %s", r.status, r.body)
	}

	// A batch job, published on NATS as enqueue --file does.
	admin, err := nats.Connect(ns.ClientURL(), nats.UserInfo("worker", "w"))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	js, _ := jetstream.New(admin)
	names := wire.Names{}
	job, _ := json.Marshal(wire.Job{ID: "b1-0001", ManagedDeviceID: device(42), ReplyTo: names.Result("batch", "b1.b1-0001")})
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if _, err := js.Publish(ctx, names.Jobs("batch"), job, jetstream.WithMsgID("b1-0001")); err != nil {
		t.Fatal(err)
	}
	if res := h.waitResult("batch", "b1-0001"); res["status"] != "succeeded" {
		t.Fatalf("the batch job: %v", res)
	}
	if r := h.get("batch", "/v1/batches/b1"); r.status != 200 || r.json(t)["succeeded"] != float64(1) {
		t.Fatalf("batch counts: %d %s", r.status, r.body)
	}

	mu.Lock()
	defer mu.Unlock()
	for _, err := range violations {
		if errors.Is(err, nats.ErrPermissionViolation) {
			t.Errorf("the gateway was refused: %v", err)
		}
	}
}

// restrictedServer starts a nats-server with JetStream and two users:
// "worker" (password "w"), allowed everything, and "gateway" (password
// "g"), allowed exactly perms.
func restrictedServer(t *testing.T, perms Permissions) *server.Server {
	t.Helper()
	opts := &server.Options{
		Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true,
		JetStream: true, StoreDir: t.TempDir(),
		Users: []*server.User{
			{Username: "worker", Password: "w"},
			{Username: "gateway", Password: "g", Permissions: &server.Permissions{
				Publish:   &server.SubjectPermission{Allow: perms.Publish, Deny: perms.DenyPublish},
				Subscribe: &server.SubjectPermission{Allow: perms.Subscribe},
			}},
		},
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	t.Cleanup(ns.Shutdown)
	return ns
}
