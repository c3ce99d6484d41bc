package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/recoverpasscode/recoverpasscode/ratelimit"
	"github.com/recoverpasscode/recoverpasscode/wire"
)

// BenchmarkSubmit compares HTTP submissions through the gateway (keep-alive,
// 64 concurrent clients, each POST acknowledged by JetStream) with direct
// JetStream publishes of the same jobs from as many goroutines, in one
// run: go test -run '^$' -bench Submit ./gateway.
func BenchmarkSubmit(b *testing.B) {
	h := newHarness(b)
	// The workers' limits bucket, as a worker creates it: each POST reads
	// the source's budget window there.
	if _, err := h.sys.JS.CreateKeyValue(context.Background(), ratelimit.BucketConfig(h.sys.Names.LimitsBucket(), 1)); err != nil {
		b.Fatal(err)
	}
	var n atomic.Int64
	b.Run("http", func(b *testing.B) {
		b.SetParallelism(64 / runtime.GOMAXPROCS(0))
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				body := jobBody(device(int(n.Add(1))))
				req, _ := http.NewRequest(http.MethodPost, h.url+"/v1/jobs", bytes.NewReader([]byte(body)))
				req.Header.Set("Authorization", "Bearer "+h.keys["ticketing"])
				resp, err := h.client.Do(req)
				if err != nil {
					b.Error(err)
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body) // so that the connection is kept
				resp.Body.Close()
				if resp.StatusCode != http.StatusAccepted {
					b.Errorf("status %d", resp.StatusCode)
					return
				}
			}
		})
	})
	b.Run("nats", func(b *testing.B) {
		b.SetParallelism(64 / runtime.GOMAXPROCS(0))
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				id := uuid.NewString()
				data, _ := json.Marshal(wire.Job{ID: id, IdempotencyKey: id, TenantID: "33333333-3333-4333-8333-333333333333", ManagedDeviceID: device(int(n.Add(1)))})
				if _, err := h.sys.JS.Publish(context.Background(), h.sys.Names.Jobs("ticketing"), data, jetstream.WithMsgID(id)); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}
