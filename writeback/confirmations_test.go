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
	t.Parallel()
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

// TestFailedConfirmationsAreKeptAndRedelivered: a confirmation whose
// delivery finally fails is kept like a result's, apart from it (its own
// key, webhook-id <jobId>/confirmation), listed by the job's id, and a
// redelivery reads it again from its stream and delivers it.
func TestFailedConfirmationsAreKeptAndRedelivered(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	sent, held := mustNewSecret(t), mustNewSecret(t)
	sw := &switchable{}
	sw.set(newReceiver(t, held)) // verifies with a secret the deliverer does not have
	srv := httptest.NewTLSServer(sw)
	t.Cleanup(srv.Close)
	cfg := testConfig(writeback.Source{Name: "automation", Webhooks: []writeback.Webhook{{Name: "hook", URL: srv.URL, Secret: sent}}})
	cfg.TLS = trusting(srv.Certificate())
	h.start(h.js, cfg)

	h.publish(wire.Result{JobID: "followed", Source: "automation", Status: wire.Succeeded, Follow: true, Ticket: "INC7"})
	h.publishConfirmation(wire.Confirmation{JobID: "followed", Source: "automation", State: wire.StateFailed, ManagedDeviceID: "d1", Ticket: "INC7"})
	kept := h.failures(writeback.Filter{JobID: "followed"}, 2)
	var conf, res writeback.Failure
	for _, f := range kept {
		if f.Confirmation {
			conf = f
		} else {
			res = f
		}
	}
	if conf.WebhookID != "followed/confirmation" || conf.ConfirmationState != wire.StateFailed || conf.ConfirmationSequence == 0 ||
		conf.Outcome != writeback.OutcomeRejected || conf.Ticket != "INC7" || conf.Endpoint != "hook" {
		t.Errorf("the confirmation's failure: %+v", conf)
	}
	if res.WebhookID != "followed/result" || res.ResultSequence == 0 {
		t.Errorf("the result's failure: %+v", res)
	}
	if all := h.failures(writeback.Filter{Source: "automation", Endpoint: "hook"}, 2); len(all) != 2 {
		t.Errorf("listed by endpoint: %+v", all)
	}

	fixed := newReceiver(t, sent)
	sw.set(fixed)
	ctx := waitCtx(t)
	if _, err := h.store.Redeliver(ctx, conf, "operator@example.com"); err != nil {
		t.Fatal(err)
	}
	must(t, fixed.Wait(ctx, func(d []receiver.Delivery, _ int) bool { return len(d) >= 1 }), "the confirmation redelivered")
	left := h.failures(writeback.Filter{JobID: "followed"}, 1)
	if left[0].Confirmation {
		t.Errorf("the result's failure was resolved instead of the confirmation's: %+v", left[0])
	}
	d := fixed.Deliveries()
	if len(d) != 1 || d[0].ID != "followed/confirmation" || d[0].Confirmation == nil || d[0].Confirmation.State != wire.StateFailed {
		t.Errorf("redelivered %+v; want the confirmation alone", d)
	}
}
