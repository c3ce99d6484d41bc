package writeback_test

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/recoverpasscode/recoverpasscode/writeback"
)

// TestRedeliverOnce: a failure is asked for once; asking again, from a
// fresh listing, says a redelivery is under way, and from a stale one,
// that it changed.
func TestRedeliverOnce(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	kv, err := h.js.KeyValue(t.Context(), h.names.DeliveriesBucket())
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := json.Marshal(writeback.Failure{Source: "ticketing", Endpoint: "hook", Kind: "webhook", JobID: "j1", WebhookID: "j1/result",
		ResultSequence: 1, Outcome: writeback.OutcomeRejected, Reason: "refused", Attempts: 3, FailedAt: time.Now()})
	if _, err := kv.Put(t.Context(), "failed.ticketing.hook.j1", raw); err != nil {
		t.Fatal(err)
	}
	listed := h.failures(writeback.Filter{Source: "ticketing", Endpoint: "hook", JobID: "j1"}, 1)
	if _, err := h.store.Redeliver(t.Context(), listed[0], "op"); err != nil {
		t.Fatal(err)
	}
	if _, err := h.store.Redeliver(t.Context(), listed[0], "op"); !errors.Is(err, jetstream.ErrKeyExists) {
		t.Errorf("redeliver from a stale listing: %v, want ErrKeyExists", err)
	}
	again := h.failures(writeback.Filter{JobID: "j1"}, 1)
	if again[0].Redeliver == nil || again[0].Redeliver.By != "op" {
		t.Fatalf("the listing does not show the request: %+v", again[0])
	}
	if _, err := h.store.Redeliver(t.Context(), again[0], "op"); !errors.Is(err, writeback.ErrRedeliveryPending) {
		t.Errorf("redeliver while one is under way: %v, want ErrRedeliveryPending", err)
	}
	if _, err := h.store.Failures(t.Context(), writeback.Filter{Source: "a.b"}); err == nil {
		t.Error("a filter with a dot was accepted")
	}
}
