package writeback

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/recoverpasscode/recoverpasscode/internal/timing"
	"github.com/recoverpasscode/recoverpasscode/wire"
)

// endpoint delivers one source's results to one target, from its own
// durable consumers, with its own goroutines and connections: an endpoint
// that is down or slow holds up no other.
type endpoint struct {
	d       *Deliverer
	spec    endpointSpec
	target  target
	metrics endpointMetrics
	log     zerolog.Logger

	results, redeliveries jetstream.Consumer
	// confirmations is the consumer of its source's confirmations (see
	// confirmations.go).
	confirmations jetstream.Consumer

	mu       sync.Mutex
	disabled bool
	// enabled is closed while the endpoint is enabled.
	enabled chan struct{}
}

func newEndpoint(d *Deliverer, s endpointSpec) *endpoint {
	client := newHTTPClient(d.cfg.TLS, d.cfg.Concurrency)
	e := &endpoint{
		d:       d,
		spec:    s,
		metrics: d.metrics.endpoint(s.source, s.name),
		log:     d.log.With().Str("source", s.source).Str("endpoint", s.name).Logger(),
		enabled: make(chan struct{}),
	}
	close(e.enabled)
	switch s.kind {
	case KindWebhook:
		e.target = &webhookTarget{spec: s.webhook, client: client, now: time.Now}
	case KindServiceNow:
		e.target = newServiceNowTarget(s.servicenow, client)
	case KindJira:
		e.target = &jiraTarget{spec: s.jira, client: client}
	}
	return e
}

// describe names where the endpoint's deliveries go, without secrets.
func (e *endpoint) describe() string {
	switch e.spec.kind {
	case KindWebhook:
		return redactURL(e.spec.webhook.url)
	case KindServiceNow:
		return e.spec.servicenow.instance + " table " + e.spec.servicenow.table
	default:
		return e.spec.jira.site
	}
}

// setUp creates the endpoint's consumers and reads whether it is disabled.
func (e *endpoint) setUp(ctx context.Context) error {
	var err error
	e.results, err = e.d.js.CreateOrUpdateConsumer(ctx, e.d.names().ResultsStream(), e.d.resultsConsumer(e.spec))
	if err != nil {
		return fmt.Errorf("writeback: consumer %s on %s: %w", consumerName(e.spec.source, e.spec.name), e.d.names().ResultsStream(), err)
	}
	bucketStream := kvStream(e.d.names().DeliveriesBucket())
	e.redeliveries, err = e.d.js.CreateOrUpdateConsumer(ctx, bucketStream, e.d.redeliveryConsumer(e.spec))
	if err != nil {
		return fmt.Errorf("writeback: consumer %s on %s: %w", consumerName(e.spec.source, e.spec.name), bucketStream, err)
	}
	if err := e.setUpConfirmations(ctx); err != nil {
		return err
	}
	_, err = e.d.store.kv.Get(ctx, disabledKey(e.spec.source, e.spec.name))
	switch {
	case err == nil:
		e.setDisabled(true)
	case !errors.Is(err, jetstream.ErrKeyNotFound):
		return fmt.Errorf("writeback: read the state of %s/%s: %w", e.spec.source, e.spec.name, err)
	}
	return nil
}

// run delivers until ctx ends.
func (e *endpoint) run(ctx context.Context) {
	var wg sync.WaitGroup
	run := func(f func()) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f()
		}()
	}
	run(func() { e.watchState(ctx) })
	run(func() { e.consume(ctx, e.redeliveries, min(e.d.cfg.Concurrency, 4), e.handleRedelivery) })
	if e.confirmations != nil {
		run(func() { e.consume(ctx, e.confirmations, min(e.d.cfg.Concurrency, 4), e.handleConfirmation) })
	}
	stop := timing.Every(ctx, e.d.cfg.SampleInterval, func(ctx context.Context) bool {
		e.sample(ctx)
		return true
	})
	e.consume(ctx, e.results, e.d.cfg.Concurrency, e.handleResult)
	stop()
	wg.Wait()
}

// consume pulls messages while slots are free and the endpoint is enabled,
// handling each in its own goroutine, until ctx ends.
func (e *endpoint) consume(ctx context.Context, cons jetstream.Consumer, slots int, handle func(context.Context, jetstream.Msg)) {
	sem := make(chan struct{}, slots)
	var wg sync.WaitGroup
	defer wg.Wait()
	for e.waitEnabled(ctx) {
		select {
		case <-ctx.Done():
			return
		case sem <- struct{}{}:
		}
		free := 1
	fill:
		for free < slots {
			select {
			case sem <- struct{}{}:
				free++
			default:
				break fill
			}
		}
		started := 0
		batch, err := cons.Fetch(free, jetstream.FetchMaxWait(e.d.cfg.FetchWait))
		if err != nil {
			if ctx.Err() == nil {
				e.log.Warn().Err(err).Msg("pull failed")
				timing.Sleep(ctx, time.Second)
			}
		} else {
			for msg := range batch.Messages() {
				started++
				wg.Add(1)
				go func() {
					defer wg.Done()
					defer func() { <-sem }()
					handle(ctx, msg)
				}()
			}
			if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) && ctx.Err() == nil {
				e.log.Warn().Err(err).Msg("pull ended with an error")
			}
		}
		for ; started < free; started++ {
			<-sem
		}
	}
}

// round is one round of delivery of a result: from the result being
// stored, or from an operator asking for a redelivery.
type round struct {
	// start is when the round began; attempt counts its attempts so far.
	start   time.Time
	attempt int
	// seq and stored locate the result in the results stream.
	seq    uint64
	stored time.Time
	// redeliveries counts the rounds before this one; redelivery is set on
	// a round an operator asked for.
	redeliveries int
	redelivery   bool
}

// handleResult delivers a result from the results stream.
func (e *endpoint) handleResult(ctx context.Context, msg jetstream.Msg) {
	meta, err := msg.Metadata()
	if err != nil {
		e.log.Error().Err(err).Msg("a message without JetStream metadata: handed back")
		_ = msg.Nak()
		return
	}
	r := round{start: meta.Timestamp, attempt: int(meta.NumDelivered), seq: meta.Sequence.Stream, stored: meta.Timestamp}
	e.deliverMessage(ctx, msg, msg.Subject(), msg.Data(), r)
}

// handleRedelivery delivers again a failure an operator asked for.
func (e *endpoint) handleRedelivery(ctx context.Context, msg jetstream.Msg) {
	meta, err := msg.Metadata()
	if err != nil || msg.Headers().Get("KV-Operation") != "" {
		_ = msg.Ack() // a deletion (delivered, or forgotten): nothing to do
		return
	}
	var f Failure
	if json.Unmarshal(msg.Data(), &f) != nil || f.Redeliver == nil {
		_ = msg.Ack() // a failure being kept, not a request
		return
	}
	// Only the latest version of the key counts: a later failure or
	// request supersedes this one.
	key := Failure{Source: e.spec.source, Endpoint: e.spec.name, JobID: f.JobID, Confirmation: f.Confirmation}.key()
	entry, err := e.d.store.kv.Get(ctx, key)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		_ = msg.Ack()
		return
	case err != nil:
		e.retryLater(msg, err)
		return
	case entry.Revision() != meta.Sequence.Stream:
		_ = msg.Ack()
		return
	}
	r := round{start: meta.Timestamp, attempt: int(meta.NumDelivered), seq: f.ResultSequence, redeliveries: f.Redeliveries + 1, redelivery: true}
	stream, what := e.d.results, "result"
	if f.Confirmation {
		r.seq, stream, what = f.ConfirmationSequence, e.d.confirmations, "confirmation"
	}
	stored, err := stream.GetMsg(ctx, r.seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		d := delivery{result: wire.Result{JobID: f.JobID, Ticket: f.Ticket, ManagedDeviceID: f.ManagedDeviceID, Status: f.ResultStatus}, id: f.WebhookID}
		if f.Confirmation {
			d.confirmation = &wire.Confirmation{JobID: f.JobID, Ticket: f.Ticket, ManagedDeviceID: f.ManagedDeviceID, State: f.ConfirmationState}
		}
		e.end(ctx, msg, d, attempt{final: OutcomeResultExpired, err: fmt.Errorf("%s %d is no longer stored in %s", what, r.seq, stream.CachedInfo().Config.Name)}, OutcomeResultExpired, r)
		return
	}
	if err != nil {
		e.retryLater(msg, err)
		return
	}
	r.stored = stored.Time
	if f.Confirmation {
		e.deliverConfirmation(ctx, msg, stored.Subject, stored.Data, r)
		return
	}
	r.stored = stored.Time
	e.deliverMessage(ctx, msg, stored.Subject, stored.Data, r)
}

// deliverMessage decodes a stored result and delivers it.
func (e *endpoint) deliverMessage(ctx context.Context, msg jetstream.Msg, subject string, body []byte, r round) {
	if e.isDisabled() {
		// Pulled while another delivery was disabling the endpoint: it
		// waits with the others.
		_ = msg.Nak()
		return
	}
	var res wire.Result
	if !e.d.names().IsResultOf(subject, e.spec.source) || json.Unmarshal(body, &res) != nil || !wire.ValidID(res.JobID) {
		d := delivery{result: wire.Result{JobID: "seq-" + fmt.Sprint(r.seq)}, id: fmt.Sprintf("seq-%d/result", r.seq)}
		e.end(ctx, msg, d, attempt{final: OutcomeNotResult, err: fmt.Errorf("the message on %s is not a result of source %s with a valid jobId", wire.Truncate(subject, 200), e.spec.source)}, OutcomeNotResult, r)
		return
	}
	d := delivery{result: res, body: body, id: res.JobID + "/result"}
	a := e.try(ctx, d, r)
	if ctx.Err() != nil {
		_ = msg.Nak() // shutting down: another process may take it now
		return
	}
	dec := e.d.policy.decide(a, r.attempt, r.start, time.Now())
	switch {
	case dec.outcome == OutcomeDelivered:
		e.delivered(ctx, msg, d, r)
	case dec.outcome != "":
		e.end(ctx, msg, d, a, dec.outcome, r)
	default:
		e.log.Debug().Str("job_id", res.JobID).Int("attempt", r.attempt).Dur("retry_in", dec.delay).Msg("retrying the delivery")
		_ = msg.NakWithDelay(dec.delay)
	}
}

// try makes one attempt within the timeout.
func (e *endpoint) try(ctx context.Context, d delivery, r round) attempt {
	actx, cancel := context.WithTimeout(ctx, e.d.cfg.Timeout)
	defer cancel()
	a := e.target.deliver(actx, d)
	if ctx.Err() != nil {
		return a
	}
	e.metrics.attempt(a)
	if !a.ok() {
		e.log.Debug().Str("job_id", d.result.JobID).Int("attempt", r.attempt).Int("status", a.status).AnErr("reason", a.err).Msg("delivery attempt failed")
	}
	return a
}

// delivered acknowledges a delivered result.
func (e *endpoint) delivered(ctx context.Context, msg jetstream.Msg, d delivery, r round) {
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if r.redelivery {
		if err := e.d.store.resolve(actx, Failure{Source: e.spec.source, Endpoint: e.spec.name, JobID: d.result.JobID, Confirmation: d.confirmation != nil}); err != nil {
			e.retryLater(msg, err)
			return
		}
	}
	if err := msg.DoubleAck(actx); err != nil {
		// The endpoint has it; JetStream will hand it out again, with the
		// same webhook-id.
		e.log.Warn().Err(err).Str("job_id", d.result.JobID).Msg("delivered, but the acknowledgement was not confirmed: it may be delivered again")
	}
	if r.redelivery {
		e.metrics.ended(OutcomeDelivered)
		e.log.Info().Str("job_id", d.result.JobID).Str("webhook_id", d.id).Msg("redelivered")
		return
	}
	if d.confirmation != nil {
		// Counted, but not in the latency of results.
		e.metrics.ended(OutcomeDelivered)
		return
	}
	e.metrics.delivered(time.Since(r.stored))
}

// end keeps a delivery that ended without a 2xx as failed, disabling the
// endpoint on 410 Gone.
func (e *endpoint) end(ctx context.Context, msg jetstream.Msg, d delivery, a attempt, outcome Outcome, r round) {
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	reason := outcomeReason(outcome, a, r)
	f := Failure{
		Source: e.spec.source, Endpoint: e.spec.name, Kind: e.spec.kind,
		JobID: d.result.JobID, WebhookID: d.id, ResultSequence: r.seq,
		ResultStatus: d.result.Status, Ticket: d.result.Ticket, ManagedDeviceID: d.result.ManagedDeviceID,
		Outcome: outcome, Reason: reason, Status: a.status, Body: a.excerpt,
		Attempts: r.attempt, Redeliveries: r.redeliveries, StoredAt: r.stored, FailedAt: time.Now().UTC(),
	}
	if c := d.confirmation; c != nil {
		f.Confirmation, f.ConfirmationSequence, f.ConfirmationState, f.ResultSequence = true, r.seq, c.State, 0
	}
	if err := e.d.store.keep(actx, f); err != nil {
		e.retryLater(msg, fmt.Errorf("keep the failed delivery: %w", err))
		return
	}
	if outcome == OutcomeGone {
		e.setDisabled(true)
		err := e.d.store.disable(actx, Disabled{Source: e.spec.source, Endpoint: e.spec.name, JobID: d.result.JobID, Reason: reason, At: f.FailedAt})
		if err != nil {
			e.log.Error().Err(err).Msg("could not record the endpoint as disabled: other processes find out by themselves")
		}
	}
	if r.redelivery {
		_ = msg.Ack()
	} else {
		_ = msg.TermWithReason(string(outcome))
	}
	e.metrics.ended(outcome)
	e.log.Warn().Str("job_id", d.result.JobID).Str("webhook_id", d.id).Str("outcome", string(outcome)).Int("status", a.status).Int("attempt", r.attempt).Str("reason", reason).
		Msg("delivery failed: kept for `enqueue deliveries list` and `redeliver`")
}

// retryLater hands a message back after a pause, when NATS itself failed.
func (e *endpoint) retryLater(msg jetstream.Msg, err error) {
	e.log.Warn().Err(err).Msg("handing a delivery back for later")
	_ = msg.NakWithDelay(e.d.cfg.MinBackoff)
}

// outcomeReason says, for a person, why a delivery ended.
func outcomeReason(o Outcome, a attempt, r round) string {
	last := "no answer"
	if a.err != nil {
		last = a.err.Error()
	}
	switch o {
	case OutcomeGone:
		return "the endpoint answered 410 Gone: it is disabled; redeliver this delivery to enable it again (" + last + ")"
	case OutcomeRejected:
		return fmt.Sprintf("refused %d time(s): %s", r.attempt, last)
	case OutcomeExhausted:
		return fmt.Sprintf("no 2xx after %d attempt(s) in the retry period: %s", r.attempt, last)
	default:
		return last
	}
}

// waitEnabled blocks while the endpoint is disabled; false when ctx ends.
func (e *endpoint) waitEnabled(ctx context.Context) bool {
	e.mu.Lock()
	ch := e.enabled
	e.mu.Unlock()
	select {
	case <-ch:
		return ctx.Err() == nil
	case <-ctx.Done():
		return false
	}
}

func (e *endpoint) isDisabled() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.disabled
}

func (e *endpoint) setDisabled(disabled bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if disabled == e.disabled {
		return
	}
	e.disabled = disabled
	if disabled {
		e.enabled = make(chan struct{})
		e.log.Warn().Msg("endpoint disabled (410 Gone): its results wait until a delivery of it is redelivered")
	} else {
		close(e.enabled)
		e.log.Info().Msg("endpoint enabled again")
	}
	e.metrics.setDisabled(disabled)
}

// watchState follows the endpoint's disabled record, so that every
// process stops and resumes together.
func (e *endpoint) watchState(ctx context.Context) {
	for ctx.Err() == nil {
		w, err := e.d.store.kv.Watch(ctx, disabledKey(e.spec.source, e.spec.name))
		if err != nil {
			e.log.Warn().Err(err).Msg("cannot watch the endpoint's state")
			timing.Sleep(ctx, time.Second)
			continue
		}
		e.follow(ctx, w)
		_ = w.Stop()
	}
}

func (e *endpoint) follow(ctx context.Context, w jetstream.KeyWatcher) {
	for {
		select {
		case <-ctx.Done():
			return
		case entry, ok := <-w.Updates():
			if !ok {
				return
			}
			if entry != nil {
				e.setDisabled(entry.Operation() == jetstream.KeyValuePut)
			}
		}
	}
}

// sample measures the endpoint's oldest undelivered result and its kept
// failures for the metrics.
func (e *endpoint) sample(ctx context.Context) {
	info, err := e.results.Info(ctx)
	if err != nil {
		if ctx.Err() == nil {
			e.log.Debug().Err(err).Msg("cannot sample the consumer")
		}
		return
	}
	var oldest time.Duration
	if info.NumPending > 0 || info.NumAckPending > 0 {
		msg, err := e.d.results.GetMsg(ctx, info.AckFloor.Stream+1, jetstream.WithGetMsgSubject(e.d.names().ResultsOf(e.spec.source)))
		if err == nil {
			oldest = max(time.Since(msg.Time), 0)
		}
	}
	kept, err := e.d.store.count(ctx, e.spec.source, e.spec.name)
	if err != nil {
		return
	}
	e.metrics.sample(oldest, kept)
}
