package worker

import (
	"context"
	"encoding/json"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/recoverpasscode/recoverpasscode/job"
	"github.com/recoverpasscode/recoverpasscode/metrics"
	"github.com/recoverpasscode/recoverpasscode/wire"
)

// Telemetry turns what the handler and the worker do into metrics and
// audit events. It is safe for concurrent use.
type Telemetry struct {
	js      jetstream.JetStream
	names   wire.Names
	metrics *metrics.Metrics
	log     zerolog.Logger
}

var _ job.Observer = (*Telemetry)(nil)

// NewTelemetry publishes audit events through js and records metrics in m.
func NewTelemetry(js jetstream.JetStream, names wire.Names, m *metrics.Metrics, log zerolog.Logger) *Telemetry {
	return &Telemetry{js: js, names: names, metrics: m, log: log}
}

// GraphCalled records a Graph call and publishes its audit event.
func (t *Telemetry) GraphCalled(_ context.Context, e wire.AuditEvent, latency time.Duration) {
	status := 0
	if e.Graph != nil {
		status = e.Graph.Status
	}
	t.metrics.GraphCall(status, latency)
	t.audit(e, e.Graph.ClientRequestID)
}

// RateLimited records a wait for the shared limit.
func (t *Telemetry) RateLimited(_ string, waited time.Duration) { t.metrics.RateLimitWait(waited) }

// Paused records a pause set after Graph asked to slow down.
func (t *Telemetry) Paused(tenantID string, until time.Time) { t.metrics.Paused(tenantID, until) }

// Held publishes the audit event of a job held by its source's budget, or
// going on after a hold; each happens once per job.
func (t *Telemetry) Held(_ context.Context, e wire.AuditEvent) { t.audit(e, "once") }

// InFlight adds delta to the jobs in flight.
func (t *Telemetry) InFlight(delta int) { t.metrics.InFlight(float64(delta)) }

// TokenError counts a failure to get a token.
func (t *Telemetry) TokenError() { t.metrics.TokenError() }

// Finished records a job's terminal decision and publishes its audit event.
func (t *Telemetry) Finished(res *wire.Result, deadLettered bool) {
	t.metrics.JobFinished(string(res.Status), res.Source, deadLettered)
	t.audit(wire.NewAuditEvent(wire.KindDecision, res, time.Now().UTC()), "decision")
}

// audit publishes e asynchronously, deduplicated by job and discriminator,
// so a publish stored again is stored once; a failure is logged, never
// fatal to the job.
func (t *Telemetry) audit(e wire.AuditEvent, discriminator string) {
	data, err := json.Marshal(e)
	if err != nil {
		t.log.Error().Err(err).Str("job_id", e.JobID).Msg("could not encode an audit event")
		return
	}
	source := e.Source
	if source == "" {
		source = "unknown"
	}
	// The subject carries the tenant and the device (validated GUIDs, else
	// a placeholder), so that history.Reader reads one device's events
	// by subject.
	m := nats.NewMsg(t.names.Audit(source, e.TenantID, e.ManagedDeviceID))
	m.Data = data
	m.Header.Set(jetstream.MsgIDHeader, e.JobID+"/"+e.Kind+"/"+discriminator)
	if e.Traceparent != "" {
		m.Header.Set("traceparent", e.Traceparent)
	}
	// The JetStream context's async error handler hands a publish the
	// server did not confirm to the AuditQueue (see AuditQueue.NotStored).
	if _, err := t.js.PublishMsgAsync(m); err != nil {
		t.log.Error().Err(err).Str("job_id", e.JobID).Msg("could not publish an audit event")
	}
}

// SampleConsumer records the jobs consumer's pending and redelivered
// counts; it suits metrics.Metrics.OnScrape.
func (t *Telemetry) SampleConsumer(cons jetstream.Consumer) func(context.Context) {
	return func(ctx context.Context) {
		if info, err := cons.Info(ctx); err == nil {
			t.metrics.Consumer(info.NumPending, uint64(info.NumRedelivered))
		}
	}
}
