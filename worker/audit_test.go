package worker

import (
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

const lostMetric = "recoverpasscode_audit_lost_total"

// auditMsg is an audit event as Telemetry publishes it, with message id id.
func (r *rig) auditMsg(id string) *nats.Msg {
	m := nats.NewMsg(r.names.Audit("test", "", ""))
	m.Data = []byte(fmt.Sprintf(`{"jobId":%q}`, id))
	m.Header.Set(jetstream.MsgIDHeader, id)
	return m
}

var errUnconfirmed = errors.New("nats: timeout waiting for ack")

// TestUnconfirmedAuditEventsStoredAgain: with every asynchronous
// confirmation lost (an ack timeout shorter than the round trip), each
// job's decision event is stored again by the queue, once: the stream
// holds exactly one per job when Run returns, and none is counted lost.
func TestUnconfirmedAuditEventsStoredAgain(t *testing.T) {
	r := newRig(t)
	m, counter := newMetrics(t)
	log := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)
	q := NewAuditQueue(m, log)
	var handedOver atomic.Int32
	js, err := jetstream.New(r.nc,
		jetstream.WithPublishAsyncTimeout(time.Nanosecond),
		jetstream.WithPublishAsyncErrHandler(func(js jetstream.JetStream, m *nats.Msg, err error) {
			handedOver.Add(1)
			q.NotStored(js, m, err)
		}))
	if err != nil {
		t.Fatal(err)
	}
	var specs []spec
	for i := range 20 {
		specs = append(specs, spec{ID: fmt.Sprintf("audit-%02d", i), Do: "ack"})
	}
	r.publish(t, "test", specs...)
	h := newFakeHandler()
	tel := NewTelemetry(js, r.names, m, log)
	run := r.start(t, h, tel, Config{JS: js, Audit: q, Concurrency: 4})
	eventually(t, 10*time.Second, "every job to finish", func() bool {
		return r.storedCount(t, r.names.ResultsStream()) == uint64(len(specs))
	})
	run.stop()
	if err := run.wait(t, 20*time.Second); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if n := r.storedCount(t, r.names.AuditStream()); n != uint64(len(specs)) {
		t.Errorf("audit stream holds %d events, want %d (one decision per job)", n, len(specs))
	}
	if n := counter(lostMetric); n != 0 {
		t.Errorf("%v audit events counted lost, want 0", n)
	}
	if n := handedOver.Load(); n == 0 {
		t.Errorf("no audit event was handed to the queue: the test lost its point")
	}
	t.Logf("%d of %d events handed to the queue", handedOver.Load(), len(specs))
}

// TestAuditQueueBounded: an event that finds the queue full is counted
// lost at once; those queued are stored, each once however often it was
// handed over.
func TestAuditQueueBounded(t *testing.T) {
	r := newRig(t)
	m, counter := newMetrics(t)
	q := newAuditQueue(2, m, zerolog.Nop())
	q.NotStored(r.js, r.auditMsg("a/decision/decision"), errUnconfirmed)
	q.NotStored(r.js, r.auditMsg("a/decision/decision"), errUnconfirmed) // the same event twice
	q.NotStored(r.js, r.auditMsg("b/decision/decision"), errUnconfirmed) // no room
	if n := counter(lostMetric); n != 1 {
		t.Fatalf("%v events counted lost, want 1 (the one that found the queue full)", n)
	}
	run := r.start(t, newFakeHandler(), &fakeObserver{}, Config{Audit: q})
	run.stop()
	if err := run.wait(t, 20*time.Second); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if n := r.storedCount(t, r.names.AuditStream()); n != 1 {
		t.Errorf("audit stream holds %d events, want 1", n)
	}
	if n := counter(lostMetric); n != 1 {
		t.Errorf("%v events counted lost, want 1", n)
	}
}

// TestAuditQueueDrainedAtStop: events queued when the stop comes are
// stored before Run returns; one handed over after Run returned is counted
// lost, not dropped silently.
func TestAuditQueueDrainedAtStop(t *testing.T) {
	r := newRig(t)
	m, counter := newMetrics(t)
	q := newAuditQueue(16, m, zerolog.Nop())
	run := r.start(t, newFakeHandler(), &fakeObserver{}, Config{Audit: q})
	for i := range 10 {
		q.NotStored(r.js, r.auditMsg(fmt.Sprintf("drain-%d/decision/decision", i)), errUnconfirmed)
	}
	run.stop()
	if err := run.wait(t, 20*time.Second); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if n := r.storedCount(t, r.names.AuditStream()); n != 10 {
		t.Errorf("audit stream holds %d events when Run returned, want 10", n)
	}
	q.NotStored(r.js, r.auditMsg("late/decision/decision"), errUnconfirmed)
	if n := counter(lostMetric); n != 1 {
		t.Errorf("%v events counted lost, want 1 (the one after Run returned)", n)
	}
}

// TestAuditLostWithoutNATSAtStop: when NATS is gone at a stop, the queue
// gives up after AuditDrainTimeout and counts every event it holds as
// lost, and Run returns.
func TestAuditLostWithoutNATSAtStop(t *testing.T) {
	r := newRig(t)
	m, counter := newMetrics(t)
	q := newAuditQueue(16, m, zerolog.Nop())
	const drain = 300 * time.Millisecond
	run := r.start(t, newFakeHandler(), &fakeObserver{}, Config{Audit: q, AuditDrainTimeout: drain})
	r.srv.Shutdown()
	for i := range 6 {
		q.NotStored(r.js, r.auditMsg(fmt.Sprintf("gone-%d/decision/decision", i)), nats.ErrDisconnected)
	}
	start := time.Now()
	run.stop()
	if err := run.wait(t, 20*time.Second); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if took := time.Since(start); took < drain || took > drain+5*time.Second {
		t.Errorf("Run returned %s after the stop, want about the audit drain timeout (%s)", took, drain)
	}
	if n := counter(lostMetric); n != 6 {
		t.Errorf("%v events counted lost, want 6", n)
	}
}

// TestAuditEventFieldsOnRetry: an event stored again keeps its subject,
// data and headers (message id, traceparent).
func TestAuditEventFieldsOnRetry(t *testing.T) {
	r := newRig(t)
	m, _ := newMetrics(t)
	q := newAuditQueue(4, m, zerolog.Nop())
	orig := r.auditMsg("kept/graphCall/crid")
	orig.Header.Set("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	q.NotStored(r.js, orig, errUnconfirmed)
	orig.Header.Set("traceparent", "changed after the handover")
	run := r.start(t, newFakeHandler(), &fakeObserver{}, Config{Audit: q})
	run.stop()
	if err := run.wait(t, 20*time.Second); err != nil {
		t.Fatalf("Run: %v", err)
	}
	msgs := r.streamMsgs(t, r.names.AuditStream())
	if len(msgs) != 1 {
		t.Fatalf("%d audit events stored, want 1", len(msgs))
	}
	got := msgs[0]
	if got.Subject != r.names.Audit("test", "", "") || string(got.Data) != `{"jobId":"kept/graphCall/crid"}` ||
		got.Header.Get(jetstream.MsgIDHeader) != "kept/graphCall/crid" ||
		got.Header.Get("traceparent") != "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01" {
		t.Errorf("stored %s %s %v", got.Subject, got.Data, got.Header)
	}
}
