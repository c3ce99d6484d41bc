package worker

import (
	"context"
	"encoding/json"
	"time"

	"github.com/cenkalti/backoff/v4"
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

// decided records a job's terminal decision and publishes its audit event.
func (t *Telemetry) decided(res *wire.Result, deadLettered bool) {
	t.metrics.JobFinished(string(res.Status), res.Source, deadLettered)
	t.audit(wire.NewAuditEvent(wire.KindDecision, res, time.Now().UTC()), "decision")
}

// audit publishes e asynchronously, deduplicated by job and discriminator,
// so a retried publish is stored once; a failure is logged, never fatal to
// the job.
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
	m := nats.NewMsg(t.names.Audit(source))
	m.Data = data
	m.Header.Set(jetstream.MsgIDHeader, e.JobID+"/"+e.Kind+"/"+discriminator)
	if e.Traceparent != "" {
		m.Header.Set("traceparent", e.Traceparent)
	}
	// The JetStream context's async error handler logs a publish the
	// server did not confirm (see service.Run).
	if _, err := t.js.PublishMsgAsync(m); err != nil {
		t.log.Error().Err(err).Str("job_id", e.JobID).Msg("could not publish an audit event")
	}
}

// Audit events whose publication was not confirmed are stored again in the
// background, with backoff from auditRetryFirst up to auditRetryMax between
// tries, for auditRetryFor: well inside the audit stream's duplicate window,
// so an event the server did store before the confirmation was lost is not
// stored twice.
const (
	auditRetryFirst = time.Second
	auditRetryMax   = 30 * time.Second
	auditRetryFor   = 10 * time.Minute
)

// AuditNotStored is the JetStream context's asynchronous publish error
// handler (jetstream.WithPublishAsyncErrHandler): nats.go calls it for an
// audit event whose acknowledgement timed out or was cut off by a lost
// connection. The event is published again, synchronously, by a goroutine
// of its own (this path is rare) until the stream confirms it; one that
// cannot be stored within auditRetryFor is logged and counted in
// recoverpasscode_audit_lost_total.
func (t *Telemetry) AuditNotStored(_ jetstream.JetStream, m *nats.Msg, err error) {
	retry := nats.NewMsg(m.Subject)
	retry.Data = m.Data
	for k, v := range m.Header {
		retry.Header[k] = append([]string(nil), v...)
	}
	id := m.Header.Get(jetstream.MsgIDHeader)
	t.log.Warn().Err(err).Str("msg_id", id).Msg("audit event not confirmed; storing it again")
	go t.storeAudit(retry, id)
}

// storeAudit publishes m until the stream confirms it, the connection is
// closed for good, or auditRetryFor has passed.
func (t *Telemetry) storeAudit(m *nats.Msg, id string) {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval, b.MaxInterval, b.MaxElapsedTime = auditRetryFirst, auditRetryMax, auditRetryFor
	b.Reset()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), publishTimeout)
		_, err := t.js.PublishMsg(ctx, m)
		cancel()
		if err == nil {
			t.log.Info().Str("msg_id", id).Msg("audit event stored on retry")
			return
		}
		delay := b.NextBackOff()
		if delay == backoff.Stop || t.js.Conn().IsClosed() {
			t.metrics.AuditLost()
			t.log.Error().Err(err).Str("msg_id", id).Msg("audit event lost: the audit stream did not confirm it")
			return
		}
		time.Sleep(delay)
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
