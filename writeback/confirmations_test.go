package writeback_test

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/recoverpasscode/recoverpasscode/wire"
	"github.com/recoverpasscode/recoverpasscode/writeback"
	"github.com/recoverpasscode/recoverpasscode/writeback/receiver"
)

// TestConfirmationsAreDelivered: a followed job's confirmation reaches the
// source's webhook as its result does, signed, with webhook-id
// <jobId>/confirmation; another source's confirmation does not.
func TestConfirmationsAreDelivered(t *testing.T) {
	h := newHarness(t)
	secret := mustNewSecret(t)
	rcv := newReceiver(t, secret)
	srv := httptest.NewTLSServer(rcv)
	t.Cleanup(srv.Close)
	cfg := testConfig(writeback.Source{Name: "automation", Webhooks: []writeback.Webhook{{URL: srv.URL, Secret: secret}}})
	cfg.TLS = trusting(srv.Certificate())
	h.start(h.js, cfg)

	h.publish(wire.Result{JobID: "followed", Source: "automation", Status: wire.Succeeded, Follow: true})
	for _, c := range []wire.Confirmation{
		{JobID: "followed", Source: "automation", State: wire.StateDone, ManagedDeviceID: "d1", Ticket: "INC1"},
		{JobID: "theirs", Source: "ticketing", State: wire.StateDone},
	} {
		body, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		_, err = h.js.Publish(ctx, h.names.Confirmation(c.Source, c.JobID), body, jetstream.WithMsgID(c.JobID+"/confirmation"))
		cancel()
		if err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	err := rcv.Wait(ctx, func(delivered []receiver.Delivery, refused int) bool { return len(delivered) >= 2 || refused > 0 })
	if err != nil || rcv.Refused() != 0 {
		t.Fatalf("deliveries %+v, %d refused: %v", rcv.Deliveries(), rcv.Refused(), err)
	}
	byID := map[string]receiver.Delivery{}
	for _, d := range rcv.Deliveries() {
		byID[d.ID] = d
	}
	c := byID["followed/confirmation"].Confirmation
	if _, ok := byID["followed/result"]; !ok || c == nil || c.State != wire.StateDone || c.Ticket != "INC1" {
		t.Errorf("deliveries %v; want the result and the confirmation of job followed", byID)
	}
	if _, ok := byID["theirs/confirmation"]; ok {
		t.Error("another source's confirmation was delivered")
	}
}
