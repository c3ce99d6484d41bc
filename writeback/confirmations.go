package writeback

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/recoverpasscode/recoverpasscode/wire"
)

// Confirmations of followed jobs (package follow) go to a source's
// webhooks too: each webhook endpoint has a second durable consumer, on
// the confirmations stream, filtered to
// <prefix>.confirmations.<source>.>, with the same name as its results
// consumer. A confirmation is POSTed as stored, signed like a result, with
// webhook-id <jobId>/confirmation, and retried by the same policy; a
// confirmation whose delivery finally fails is logged and counted, not
// kept for redelivery (the confirmation stays readable in its stream).

// confirmationsConsumer is the endpoint's durable consumer of its source's
// confirmations.
func (d *Deliverer) confirmationsConsumer(s endpointSpec) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:       consumerName(s.source, s.name),
		Description:   fmt.Sprintf("recoverpasscode write-back: confirmations of %s to %s %s", s.source, s.kind, s.name),
		FilterSubject: d.cfg.Names.ConfirmationsOf(s.source),
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       d.cfg.AckWait,
		MaxDeliver:    -1,
		MaxAckPending: d.cfg.MaxAckPending,
		DeliverPolicy: jetstream.DeliverNewPolicy,
	}
}

// deliversConfirmations reports whether the endpoint takes confirmations:
// webhooks do; the ticket adapters write the result alone.
func (e *endpoint) deliversConfirmations() bool { return e.spec.kind == KindWebhook }

// setUpConfirmations creates the endpoint's confirmations consumer.
func (e *endpoint) setUpConfirmations(ctx context.Context) error {
	if !e.deliversConfirmations() {
		return nil
	}
	var err error
	e.confirmations, err = e.d.js.CreateOrUpdateConsumer(ctx, e.d.names().ConfirmationsStream(), e.d.confirmationsConsumer(e.spec))
	if err != nil {
		return fmt.Errorf("writeback: consumer %s on %s: %w", consumerName(e.spec.source, e.spec.name), e.d.names().ConfirmationsStream(), err)
	}
	return nil
}

// handleConfirmation delivers one stored confirmation.
func (e *endpoint) handleConfirmation(ctx context.Context, msg jetstream.Msg) {
	meta, err := msg.Metadata()
	if err != nil {
		_ = msg.Nak()
		return
	}
	if e.isDisabled() {
		_ = msg.Nak()
		return
	}
	var c wire.Confirmation
	if json.Unmarshal(msg.Data(), &c) != nil || !wire.ValidID(c.JobID) || msg.Subject() != e.d.names().Confirmation(e.spec.source, c.JobID) {
		e.log.Warn().Str("subject", wire.Truncate(msg.Subject(), 200)).Msg("not a confirmation of this source: dropped")
		_ = msg.TermWithReason("not a confirmation")
		return
	}
	d := delivery{result: wire.Result{JobID: c.JobID, Ticket: c.Ticket, ManagedDeviceID: c.ManagedDeviceID}, body: msg.Data(), id: c.JobID + "/confirmation"}
	r := round{start: meta.Timestamp, attempt: int(meta.NumDelivered), seq: meta.Sequence.Stream, stored: meta.Timestamp}
	a := e.try(ctx, d, r)
	if ctx.Err() != nil {
		_ = msg.Nak()
		return
	}
	dec := e.d.policy.decide(a, r.attempt, r.start, time.Now())
	switch {
	case dec.outcome == OutcomeDelivered:
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if err := msg.DoubleAck(actx); err != nil {
			e.log.Warn().Err(err).Str("job_id", c.JobID).Msg("confirmation delivered, but the acknowledgement was not confirmed: it may be delivered again")
		}
	case dec.outcome != "":
		e.metrics.ended(dec.outcome)
		e.log.Warn().Str("job_id", c.JobID).Str("outcome", string(dec.outcome)).Int("status", a.status).AnErr("reason", a.err).
			Msg("confirmation delivery failed; the confirmation stays in its stream")
		_ = msg.TermWithReason(string(dec.outcome))
	default:
		_ = msg.NakWithDelay(dec.delay)
	}
}
