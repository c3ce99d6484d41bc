package service

import (
	"sync/atomic"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/recoverpasscode/recoverpasscode/metrics"
	"github.com/recoverpasscode/recoverpasscode/worker"
)

// auditRetry is the JetStream context's asynchronous publish error handler
// (jetstream.WithPublishAsyncErrHandler), which hands every audit event the
// stream did not confirm to the telemetry to be stored again. The context
// must exist before the telemetry, which publishes through it, so the
// handler is built first and pointed at the telemetry once that exists;
// until then (nothing is published asynchronously before) an unconfirmed
// event is logged and counted as lost rather than dereferencing nothing.
// It is safe for concurrent use.
type auditRetry struct {
	to      atomic.Pointer[worker.Telemetry]
	metrics *metrics.Metrics
	log     zerolog.Logger
}

// notStored is the handler given to jetstream.New.
func (r *auditRetry) notStored(js jetstream.JetStream, m *nats.Msg, err error) {
	if t := r.to.Load(); t != nil {
		t.AuditNotStored(js, m, err)
		return
	}
	r.metrics.AuditLost()
	r.log.Error().Err(err).Str("msg_id", m.Header.Get(jetstream.MsgIDHeader)).Msg("audit event lost: not confirmed before the telemetry started")
}
