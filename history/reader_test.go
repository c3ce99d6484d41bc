package history_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/recoverpasscode/recoverpasscode/devserver/devservertest"
	"github.com/recoverpasscode/recoverpasscode/history"
	"github.com/recoverpasscode/recoverpasscode/queue"
	"github.com/recoverpasscode/recoverpasscode/wire"
)

var names = wire.Names{Prefix: "hist"}

// rig is a real nats-server with the audit stream as the worker creates it.
type rig struct {
	nc *nats.Conn
	js jetstream.JetStream
	// n counts the events published, so each has its own job id and time.
	n int
}

func newRig(t *testing.T, mutate func(*jetstream.StreamConfig)) *rig {
	t.Helper()
	srv := devservertest.Start(t)
	nc, err := nats.Connect(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	for _, cfg := range (queue.Setup{Names: names}).Streams() {
		if cfg.Name != names.AuditStream() {
			continue
		}
		if mutate != nil {
			mutate(&cfg)
		}
		if _, err := js.CreateStream(t.Context(), cfg); err != nil {
			t.Fatal(err)
		}
	}
	return &rig{nc: nc, js: js}
}

var base = time.Date(2026, 12, 2, 1, 0, 0, 0, time.UTC)

// publish stores one event of source about the device, as the worker's
// telemetry does, and returns its job id.
func (r *rig) publish(t *testing.T, source, tenant, device string) string {
	t.Helper()
	r.n++
	e := wire.AuditEvent{Kind: wire.KindDecision, JobID: fmt.Sprintf("job-%d", r.n), Source: source,
		TenantID: tenant, ManagedDeviceID: device, Status: wire.Succeeded, Worker: "test", At: base.Add(time.Duration(r.n) * time.Second)}
	data, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.js.PublishAsync(names.Audit(source, tenant, device), data); err != nil {
		t.Fatal(err)
	}
	return e.JobID
}

// stored waits until every event published is stored.
func (r *rig) stored(t *testing.T) {
	t.Helper()
	select {
	case <-r.js.PublishAsyncComplete():
	case <-time.After(30 * time.Second):
		t.Fatalf("%d publishes still unconfirmed", r.js.PublishAsyncPending())
	}
}

const (
	tenantA = "0f6a7a2c-3d1e-4a6b-9c1d-2b7e8f9a0b1c"
	tenantB = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"
)

func device(i int) string { return fmt.Sprintf("00000000-0000-4000-8000-%012d", i) }

func jobIDs(events []wire.AuditEvent) []string {
	ids := make([]string, len(events))
	for i, e := range events {
		ids[i] = e.JobID
	}
	return ids
}

// newestFirst reverses ids (oldest first) and keeps the first limit.
func newestFirst(ids []string, limit int) []string {
	var out []string
	for i := len(ids) - 1; i >= 0 && len(out) < limit; i-- {
		out = append(out, ids[i])
	}
	return out
}

// TestDeviceReadsOnlyThatDeviceNewestFirst: events of three sources about
// several devices in two tenants (the same device id in both), and events
// without a tenant or with an invalid device id; a device's history holds
// its events from every source and nothing else, newest first, and the
// limit keeps the newest.
func TestDeviceReadsOnlyThatDeviceNewestFirst(t *testing.T) {
	r := newRig(t, nil)
	sources := []string{"ticketing", "batch", "automation"}
	var want []string
	for round := range 4 {
		for d := range 5 {
			for _, tenant := range []string{tenantA, tenantB} {
				source := sources[(round+d)%len(sources)]
				id := r.publish(t, source, tenant, device(d))
				if tenant == tenantA && d == 3 {
					want = append(want, id)
				}
			}
		}
		r.publish(t, "batch", "", device(3))
		r.publish(t, "batch", tenantA, "not-a-guid."+device(3))
		// The same device in capitals: one device, one subject.
		if round == 2 {
			want = append(want, r.publish(t, "ticketing", strings.ToUpper(tenantA), strings.ToUpper(device(3))))
		}
	}
	r.stored(t)
	h := history.New(r.js, names)

	got, err := h.Device(t.Context(), tenantA, strings.ToUpper(device(3)), 0)
	if err != nil {
		t.Fatal(err)
	}
	if g, w := strings.Join(jobIDs(got), " "), strings.Join(newestFirst(want, 100), " "); g != w {
		t.Errorf("history:\n got %s\nwant %s", g, w)
	}
	seen := map[string]bool{}
	for _, e := range got {
		if !strings.EqualFold(e.TenantID, tenantA) || !strings.EqualFold(e.ManagedDeviceID, device(3)) {
			t.Errorf("event of another device: %+v", e)
		}
		seen[e.Source] = true
	}
	if len(seen) != len(sources) {
		t.Errorf("sources %v, want all of %v", seen, sources)
	}

	got, err = h.Device(t.Context(), tenantA, device(3), 2)
	if err != nil {
		t.Fatal(err)
	}
	if g, w := strings.Join(jobIDs(got), " "), strings.Join(newestFirst(want, 2), " "); g != w {
		t.Errorf("limit 2: got %s, want %s", g, w)
	}

	got, err = h.Device(t.Context(), tenantB, device(99), 10)
	if err != nil || len(got) != 0 {
		t.Errorf("device without events: %v, %v; want none and no error", got, err)
	}
}

// TestChattyDeviceReadsItsNewestOnly: a device with far more events than
// the limit, spread over the stream in different ways among other
// devices' events, gets exactly its newest events back, and the reader
// receives a small multiple of the limit, not the device's whole history.
func TestChattyDeviceReadsItsNewestOnly(t *testing.T) {
	const events, chatty, limit = 1500, 300, 25
	layouts := []struct {
		name string
		// at reports whether event i of events is the chatty device's.
		at func(i int) bool
	}{
		{"spread evenly", func(i int) bool { return i%5 == 0 }},
		{"all early", func(i int) bool { return i < chatty }},
		{"all late", func(i int) bool { return i >= events-chatty }},
		{"early burst, a trickle since", func(i int) bool { return i < chatty-30 || (i > 300 && i%40 == 0 && i < 300+30*40) }},
	}
	for _, l := range layouts {
		t.Run(l.name, func(t *testing.T) {
			r := newRig(t, nil)
			var want []string
			for i := range events {
				if l.at(i) {
					want = append(want, r.publish(t, []string{"automation", "batch"}[i%2], tenantA, device(1)))
					continue
				}
				r.publish(t, "batch", tenantA, device(2+i%50))
			}
			r.stored(t)
			if len(want) < 4*limit {
				t.Fatalf("layout has %d events of the device, want many more than %d", len(want), limit)
			}
			h := history.New(r.js, names)
			before := r.nc.Stats().InMsgs
			got, err := h.Device(t.Context(), tenantA, device(1), limit)
			if err != nil {
				t.Fatal(err)
			}
			received := r.nc.Stats().InMsgs - before
			if g, w := strings.Join(jobIDs(got), " "), strings.Join(newestFirst(want, limit), " "); g != w {
				t.Errorf("history:\n got %s\nwant %s", g, w)
			}
			// A first batch of limit, the probes, at most 2×limit read, and
			// each request's end-of-batch message.
			if most := uint64(5*limit + 30); received > most {
				t.Errorf("received %d messages for a device of %d events, want at most %d", received, len(want), most)
			}
			t.Logf("%d events of the device, %d messages received", len(want), received)
		})
	}
}

// TestInvalidIDsRejectedBeforeAnyRequest: ids that are not GUIDs (among
// them wildcards and subject separators) are refused with ErrInvalidID and
// never reach the server.
func TestInvalidIDsRejectedBeforeAnyRequest(t *testing.T) {
	r := newRig(t, nil)
	h := history.New(r.js, names)
	before := r.nc.Stats().OutMsgs
	for _, tc := range []struct{ tenant, device string }{
		{tenantA, ""}, {"", device(1)}, {tenantA, "*"}, {">", device(1)},
		{tenantA, device(1) + ".x"}, {tenantA, "_"}, {"{" + tenantA + "}", device(1)}, {tenantA, device(1)[:35] + "g"},
	} {
		_, err := h.Device(t.Context(), tc.tenant, tc.device, 10)
		if !errors.Is(err, history.ErrInvalidID) {
			t.Errorf("Device(%q, %q): %v, want ErrInvalidID", tc.tenant, tc.device, err)
		}
	}
	if sent := r.nc.Stats().OutMsgs - before; sent != 0 {
		t.Errorf("%d messages sent for invalid ids, want none", sent)
	}
}

// TestStreamWithoutDirectGets: an audit stream made before AllowDirect
// (an older worker's) gives an error that says so, not a timeout.
func TestStreamWithoutDirectGets(t *testing.T) {
	r := newRig(t, func(c *jetstream.StreamConfig) { c.AllowDirect = false })
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	_, err := history.New(r.js, names).Device(ctx, tenantA, device(1), 10)
	if !errors.Is(err, history.ErrNoDirectGet) {
		t.Fatalf("Device: %v, want ErrNoDirectGet", err)
	}
}
