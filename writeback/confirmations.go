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
// endpoints too: each endpoint has a second durable consumer, on
// the confirmations stream, filtered to
// <prefix>.confirmations.<source>.>, with the same name as its results
// consumer. A webhook gets a confirmation POSTed as stored, signed like a
// result, with webhook-id <jobId>/confirmation; ServiceNow a second work
// note and Jira a second comment on the ticket, the ConfirmationNote
// ("the device did it", failed, unknown, with the device's name and last
// check-in). Each is retried by the same policy as results; a
// confirmation whose delivery finally fails is kept in the deliveries
// bucket like a result's (key failed.<source>.<endpoint>.<jobId>/confirmation),
// listed and redelivered alike: the redelivery reads it again from the
// confirmations stream.

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

// setUpConfirmations creates the endpoint's confirmations consumer.
func (e *endpoint) setUpConfirmations(ctx context.Context) error {
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
	r := round{start: meta.Timestamp, attempt: int(meta.NumDelivered), seq: meta.Sequence.Stream, stored: meta.Timestamp}
	e.deliverConfirmation(ctx, msg, msg.Subject(), msg.Data(), r)
}

// deliverConfirmation decodes a stored confirmation and delivers it; one
// whose delivery finally fails is kept like a result's.
func (e *endpoint) deliverConfirmation(ctx context.Context, msg jetstream.Msg, subject string, body []byte, r round) {
	if e.isDisabled() {
		_ = msg.Nak()
		return
	}
	var c wire.Confirmation
	if json.Unmarshal(body, &c) != nil || !wire.ValidID(c.JobID) || subject != e.d.names().Confirmation(e.spec.source, c.JobID) {
		jobID := "seq-" + fmt.Sprint(r.seq)
		d := delivery{result: wire.Result{JobID: jobID}, confirmation: &wire.Confirmation{JobID: jobID}, id: confirmationItem(jobID)}
		e.end(ctx, msg, d, attempt{final: OutcomeNotResult, err: fmt.Errorf("the message on %s is not a confirmation of source %s with a valid jobId", wire.Truncate(subject, 200), e.spec.source)}, OutcomeNotResult, r)
		return
	}
	d := delivery{result: wire.Result{JobID: c.JobID, Ticket: c.Ticket, ManagedDeviceID: c.ManagedDeviceID}, confirmation: &c, body: body, id: confirmationItem(c.JobID)}
	a := e.try(ctx, d, r)
	if ctx.Err() != nil {
		_ = msg.Nak()
		return
	}
	dec := e.d.policy.decide(a, r.attempt, r.start, time.Now())
	switch {
	case dec.outcome == OutcomeDelivered:
		e.delivered(ctx, msg, d, r)
	case dec.outcome != "":
		e.end(ctx, msg, d, a, dec.outcome, r)
	default:
		_ = msg.NakWithDelay(dec.delay)
	}
}
