package worker

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/recoverpasscode/recoverpasscode/metrics"
)

// Audit events whose publication was not confirmed are stored again with
// backoff from auditRetryFirst up to auditRetryMax between tries, for up to
// auditRetryFor after the confirmation was found missing: well inside the
// audit stream's duplicate window, so an event the server did store before
// the confirmation was lost is not stored twice.
const (
	auditRetryFirst = time.Second
	auditRetryMax   = 30 * time.Second
	auditRetryFor   = 10 * time.Minute
)

// The queue holds at most auditQueueSize events (as many as the service lets
// be in flight unconfirmed, so one lost connection's worth fits) and stores
// them with auditStorers goroutines, so that a few events the stream keeps
// refusing do not hold up the others.
const (
	auditQueueSize = 4096
	auditStorers   = 4
)

// AuditQueue stores again the audit events whose asynchronous publication
// the stream did not confirm (an acknowledgement that timed out, or one a
// lost connection cut off). Its memory is bounded: an event that finds the
// queue full is logged and counted in recoverpasscode_audit_lost_total, as
// is one not stored within 10 minutes. A Worker runs the queue while it
// runs (see Config.Audit) and drains it when it stops. It is safe for
// concurrent use.
type AuditQueue struct {
	metrics *metrics.Metrics
	log     zerolog.Logger

	mu     sync.Mutex
	closed bool
	events chan auditEvent
}

// auditEvent is one event to store again, and when to give up on it.
type auditEvent struct {
	msg   *nats.Msg
	id    string
	until time.Time
}

// NewAuditQueue returns an empty queue that counts the events it loses in
// m.
func NewAuditQueue(m *metrics.Metrics, log zerolog.Logger) *AuditQueue {
	return newAuditQueue(auditQueueSize, m, log)
}

func newAuditQueue(size int, m *metrics.Metrics, log zerolog.Logger) *AuditQueue {
	return &AuditQueue{metrics: m, log: log, events: make(chan auditEvent, size)}
}

// NotStored is the JetStream context's asynchronous publish error handler
// (jetstream.WithPublishAsyncErrHandler): nats.go calls it for an audit
// event the stream did not confirm. It queues a copy of m without blocking;
// when the queue is full or closed, the event is counted as lost.
func (q *AuditQueue) NotStored(_ jetstream.JetStream, m *nats.Msg, err error) {
	retry := nats.NewMsg(m.Subject)
	retry.Data = m.Data
	for k, v := range m.Header {
		retry.Header[k] = append([]string(nil), v...)
	}
	e := auditEvent{msg: retry, id: m.Header.Get(jetstream.MsgIDHeader), until: time.Now().Add(auditRetryFor)}
	q.mu.Lock()
	queued := false
	if !q.closed {
		select {
		case q.events <- e:
			queued = true
		default:
		}
	}
	closed := q.closed
	q.mu.Unlock()
	switch {
	case queued:
		q.log.Warn().Err(err).Str("msg_id", e.id).Msg("audit event not confirmed; storing it again")
	case closed:
		q.lost(e.id, err, "the worker had stopped")
	default:
		q.lost(e.id, err, "too many audit events await storing again")
	}
}

// run stores queued events through js until the queue is closed and empty,
// or ctx ends; events left then are counted as lost. It returns when its
// goroutines have.
func (q *AuditQueue) run(ctx context.Context, js jetstream.JetStream) {
	var wg sync.WaitGroup
	for range auditStorers {
		wg.Go(func() {
			for e := range q.events {
				q.store(ctx, js, e)
			}
		})
	}
	wg.Wait()
}

// close takes no more events: run stores those queued and returns.
func (q *AuditQueue) close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.closed {
		q.closed = true
		close(q.events)
	}
}

// store publishes e until the stream confirms it, the connection is
// closed for good, e's time is up, or ctx ends.
func (q *AuditQueue) store(ctx context.Context, js jetstream.JetStream, e auditEvent) {
	if ctx.Err() != nil {
		q.lost(e.id, ctx.Err(), "the worker stopped before it was stored")
		return
	}
	b := backoff.NewExponentialBackOff()
	b.InitialInterval, b.MaxInterval = auditRetryFirst, auditRetryMax
	b.MaxElapsedTime = time.Until(e.until)
	if b.MaxElapsedTime <= 0 {
		q.lost(e.id, errors.New("waited too long in the queue"), "not stored within 10 minutes")
		return
	}
	publish := func() error {
		pctx, cancel := context.WithTimeout(ctx, publishTimeout)
		defer cancel()
		_, err := js.PublishMsg(pctx, e.msg)
		if err != nil && js.Conn().IsClosed() {
			return backoff.Permanent(err)
		}
		return err
	}
	notify := func(err error, delay time.Duration) {
		q.log.Debug().Err(err).Str("msg_id", e.id).Dur("retry_in", delay).Msg("audit event still not stored")
	}
	if err := backoff.RetryNotify(publish, backoff.WithContext(b, ctx), notify); err != nil {
		q.lost(e.id, err, "the audit stream did not confirm it")
		return
	}
	q.log.Info().Str("msg_id", e.id).Msg("audit event stored on retry")
}

// lost counts and logs an event given up on.
func (q *AuditQueue) lost(id string, err error, why string) {
	q.metrics.AuditLost()
	q.log.Error().Err(err).Str("msg_id", id).Msg("audit event lost: " + why)
}
