package service

import (
	"bytes"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/recoverpasscode/recoverpasscode/metrics"
)

// TestAuditUnconfirmedBeforeTheTelemetryIsCountedLost: the JetStream
// context's error handler exists before the telemetry it hands events to;
// an event it is given before then is counted and logged as lost, not a
// nil dereference.
func TestAuditUnconfirmedBeforeTheTelemetryIsCountedLost(t *testing.T) {
	reg := prometheus.NewRegistry()
	var logs bytes.Buffer
	r := &auditRetry{metrics: metrics.New(reg), log: zerolog.New(&logs)}
	m := nats.NewMsg("recoverpasscode.audit.ticketing")
	m.Header.Set(jetstream.MsgIDHeader, "job-1/decision/decision")
	r.notStored(nil, m, nats.ErrTimeout)

	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	lost := -1.0
	for _, f := range families {
		if f.GetName() == "recoverpasscode_audit_lost_total" {
			lost = f.GetMetric()[0].GetCounter().GetValue()
		}
	}
	if lost != 1 {
		t.Errorf("recoverpasscode_audit_lost_total = %v, want 1", lost)
	}
	if !strings.Contains(logs.String(), "job-1/decision/decision") {
		t.Errorf("log does not name the lost event: %s", logs.String())
	}
}
