package history_test

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/recoverpasscode/recoverpasscode/history"
	"github.com/recoverpasscode/recoverpasscode/wire"
)

// BenchmarkDevice times a device's history among 100,000 audit events
// (10,000 devices, about 10 events each, and one chatty device with 1% of
// them) against a direct get of one event, on one embedded nats-server.
// `go run ./bench --rows history` makes the same measurement among
// 1,000,000 events.
func BenchmarkDevice(b *testing.B) {
	const events, devices = 100_000, 10_000
	r := newRigTB(b)
	rnd := rand.New(rand.NewPCG(1, 2))
	sources := []string{"ticketing", "batch", "automation"}
	for i := range events {
		d, source := device(rnd.IntN(devices)), sources[(i/2)%3]
		if (i/2)%100 == 0 {
			d, source = device(devices), "automation"
		}
		e := wire.AuditEvent{Kind: wire.KindDecision, JobID: fmt.Sprintf("job-%d", i/2), Source: source,
			TenantID: tenantA, ManagedDeviceID: d, Status: wire.Succeeded, Worker: "bench", At: base.Add(time.Duration(i) * 31536 * time.Millisecond)}
		data, _ := json.Marshal(e)
		if _, err := r.js.PublishAsync(names.Audit(source, tenantA, d, e.At), data); err != nil {
			b.Fatal(err)
		}
		if r.js.PublishAsyncPending() >= 2048 {
			<-r.js.PublishAsyncComplete()
		}
	}
	<-r.js.PublishAsyncComplete()
	stream, err := r.js.Stream(b.Context(), names.AuditStream())
	if err != nil {
		b.Fatal(err)
	}
	h := history.New(r.js, names)
	b.Run("direct get", func(b *testing.B) {
		for b.Loop() {
			if _, err := stream.GetMsg(b.Context(), 1+rnd.Uint64N(events)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("device", func(b *testing.B) {
		for b.Loop() {
			if _, err := h.Device(b.Context(), tenantA, device(rnd.IntN(devices)), 100); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("chatty device", func(b *testing.B) {
		for b.Loop() {
			if _, err := h.Device(b.Context(), tenantA, device(devices), 100); err != nil {
				b.Fatal(err)
			}
		}
	})
}
