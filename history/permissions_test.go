package history_test

import (
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/recoverpasscode/recoverpasscode/history"
	"github.com/recoverpasscode/recoverpasscode/queue"
)

// TestReaderNeedsOnlyItsPermissions: a NATS user allowed exactly
// history.Permissions and its own inboxes reads a device's history.
func TestReaderNeedsOnlyItsPermissions(t *testing.T) {
	srv, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: server.RANDOM_PORT, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true,
		Users: []*server.User{
			{Username: "worker", Password: "w"},
			{Username: "console", Password: "c", Permissions: &server.Permissions{
				Publish:   &server.SubjectPermission{Allow: history.Permissions(names)},
				Subscribe: &server.SubjectPermission{Allow: []string{"_INBOX.console.>"}},
			}},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start()
	t.Cleanup(srv.Shutdown)
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	connect := func(user, password string, opts ...nats.Option) jetstream.JetStream {
		nc, err := nats.Connect(srv.ClientURL(), append(opts, nats.UserInfo(user, password))...)
		if err != nil {
			t.Fatalf("%s: %v", user, err)
		}
		t.Cleanup(nc.Close)
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		return js
	}
	worker := &rig{js: connect("worker", "w")}
	for _, cfg := range (queue.Setup{Names: names}).Streams() {
		if cfg.Name == names.AuditStream() {
			if _, err := worker.js.CreateStream(t.Context(), cfg); err != nil {
				t.Fatal(err)
			}
		}
	}
	var want []string
	for i := range 6 {
		want = append(want, worker.publish(t, []string{"ticketing", "batch"}[i%2], tenantA, device(7)))
		worker.publish(t, "batch", tenantA, device(8))
	}
	worker.stored(t)

	console := connect("console", "c", nats.CustomInboxPrefix("_INBOX.console"))
	got, err := history.New(console, names).Device(t.Context(), tenantA, device(7), 4)
	if err != nil {
		t.Fatalf("Device as the console's user: %v", err)
	}
	if g, w := jobIDs(got), newestFirst(want, 4); len(g) != len(w) || g[0] != w[0] || g[3] != w[3] {
		t.Errorf("history %v, want %v", g, w)
	}
}
