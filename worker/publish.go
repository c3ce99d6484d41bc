package worker

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/recoverpasscode/recoverpasscode/job"
	"github.com/recoverpasscode/recoverpasscode/wire"
)

// publishTimeout bounds each publish of a result or dead letter.
const publishTimeout = 10 * time.Second

// handle processes one message end to end: handler, dead letter, result,
// acknowledgement.
func (w *Worker) handle(ctx context.Context, msg jetstream.Msg) {
	meta, err := msg.Metadata()
	if err != nil {
		w.log.Error().Err(err).Msg("job message without JetStream metadata; terminating it")
		_ = msg.Term()
		return
	}
	w.cfg.Telemetry.InFlight(1)
	defer w.cfg.Telemetry.InFlight(-1)
	d := job.Delivery{
		Data: msg.Data(),
		Meta: wire.Meta{
			Source:    w.cfg.Names.SourceOf(msg.Subject()),
			MsgID:     msg.Headers().Get(jetstream.MsgIDHeader),
			Stream:    meta.Stream,
			Sequence:  meta.Sequence.Stream,
			Timestamp: meta.Timestamp,
		},
		NumDelivered: meta.NumDelivered,
		InProgress:   func() { _ = msg.InProgress() },
	}
	if tp := msg.Headers().Get("traceparent"); wire.ValidTraceparent(tp) {
		d.Meta.Traceparent = tp
	}
	out := w.cfg.Handler.Handle(ctx, d)
	if out.CredentialsBroken {
		select {
		case w.credsBroken <- struct{}{}:
		default:
		}
	}
	if out.Disposition == job.Retry {
		if err := msg.NakWithDelay(out.Delay); err != nil {
			w.log.Warn().Err(err).Uint64("seq", d.Meta.Sequence).Msg("nak failed; the job is redelivered after its ack wait")
		}
		return
	}
	log := w.log.With().Str("job_id", out.Result.JobID).Str("status", string(out.Result.Status)).Logger()
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), publishTimeout)
	defer cancel()
	// The dead letter goes first: whoever sees a job's result (a person
	// waiting with enqueue --wait, then replaying the DLQ) finds its dead
	// letter stored too.
	if out.DeadLetter != "" {
		if err := w.publishDeadLetter(pctx, msg, d, out); err != nil {
			log.Error().Err(err).Msg("could not publish the dead letter; the job will be redelivered")
			_ = msg.NakWithDelay(time.Second)
			return
		}
	}
	if err := w.publishResult(pctx, out); err != nil {
		log.Error().Err(err).Msg("could not publish the result; the job will be redelivered")
		_ = msg.NakWithDelay(time.Second)
		return
	}
	if out.Result.Follow && w.cfg.Follow != nil {
		// After the result, before the ack: a crash in between follows the
		// job on its redelivery, whose record is stored once.
		if err := w.cfg.Follow(pctx, out.Result); err != nil {
			log.Error().Err(err).Msg("could not start following the job; it will be redelivered")
			_ = msg.NakWithDelay(time.Second)
			return
		}
	}
	w.cfg.Telemetry.Finished(out.Result, out.DeadLetter != "")
	if out.Disposition == job.Term {
		err = msg.TermWithReason(out.DeadLetter)
	} else {
		// A plain ack: a lost one means a redelivery, which the idempotency
		// record answers and the results stream deduplicates, so waiting
		// for the server's confirmation would buy a log line for a round
		// trip per job.
		err = msg.Ack()
	}
	if err != nil {
		log.Warn().Err(err).Msg("ack failed; a redelivery will be answered from the idempotency record")
		return
	}
	log.Info().Bool("replayed", out.Result.Replayed).Int("attempts", out.Result.Attempts).Msg("job finished")
}

// publishResult stores the result in the results stream, deduplicated by
// job, and sends it to a reply subject outside the stream if the job named
// one.
func (w *Worker) publishResult(ctx context.Context, out job.Outcome) error {
	res := out.Result
	data, err := json.Marshal(res)
	if err != nil {
		return fmt.Errorf("encode result: %w", err)
	}
	stored := w.cfg.Names.Result(res.Source, res.JobID)
	if out.ReplyTo != "" && w.cfg.Names.IsResult(out.ReplyTo) {
		stored = out.ReplyTo
	}
	m := nats.NewMsg(stored)
	m.Data = data
	m.Header.Set(jetstream.MsgIDHeader, res.JobID+"/result")
	if res.Traceparent != "" {
		m.Header.Set("traceparent", res.Traceparent)
	}
	if _, err := w.cfg.JS.PublishMsg(ctx, m); err != nil {
		return fmt.Errorf("store result on %s: %w", stored, err)
	}
	if out.ReplyTo == "" || out.ReplyTo == stored {
		return nil
	}
	if err := w.cfg.NC.Publish(out.ReplyTo, data); err != nil {
		return fmt.Errorf("send result to %s: %w", out.ReplyTo, err)
	}
	return nil
}

func (w *Worker) publishDeadLetter(ctx context.Context, msg jetstream.Msg, d job.Delivery, out job.Outcome) error {
	dl := wire.DeadLetter{
		JobID:    out.Result.JobID,
		Source:   out.Result.Source,
		Reason:   out.DeadLetter,
		Subject:  msg.Subject(),
		Sequence: d.Meta.Sequence,
		Headers:  msg.Headers(),
		Result:   out.Result,
		At:       time.Now().UTC(),
	}
	dl.JobSize = len(d.Data)
	switch {
	case len(d.Data) > wire.MaxQuote:
		dl.JobTruncated = true
		dl.JobBase64 = base64.StdEncoding.EncodeToString(d.Data[:wire.MaxQuote])
	case utf8.Valid(d.Data):
		dl.Job = string(d.Data)
	default:
		dl.JobBase64 = base64.StdEncoding.EncodeToString(d.Data)
	}
	data, err := json.Marshal(dl)
	if err != nil {
		return fmt.Errorf("encode dead letter: %w", err)
	}
	source := out.Result.Source
	if source == "" {
		source = "unknown"
	}
	m := nats.NewMsg(w.cfg.Names.DLQ(source))
	m.Data = data
	m.Header.Set(jetstream.MsgIDHeader, out.Result.JobID+"/dlq")
	if _, err := w.cfg.JS.PublishMsg(ctx, m); err != nil {
		return fmt.Errorf("publish dead letter: %w", err)
	}
	return nil
}
