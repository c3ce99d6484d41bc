package batch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/recoverpasscode/recoverpasscode/wire"
)

// Publisher publishes jobs with asynchronous JetStream publishes, keeping
// at most MaxPending acknowledgements outstanding. Each job's Nats-Msg-Id
// is its id, so a job sent twice (a retry here, or a re-run of the batch
// within the stream's duplicate window) is stored once. The zero value
// with NC set is usable; a Publisher is safe for one Publish at a time, and
// while it publishes it chains its own error handler before the
// connection's.
type Publisher struct {
	// NC is the NATS connection. Required.
	NC *nats.Conn
	// MaxPending bounds acknowledgements outstanding. Defaults to 256.
	MaxPending int
	// AckTimeout bounds the wait for one acknowledgement. Defaults to 10s.
	AckTimeout time.Duration
	// Retries is how often a job whose acknowledgement failed is sent
	// again, synchronously: at once, then after 100ms, growing up to 2s
	// between tries. Defaults to 3.
	Retries int
}

// PublishStats says what Publish did.
type PublishStats struct {
	// Published counts jobs the jobs stream acknowledged, Duplicates among
	// them those it already held (sent within its duplicate window).
	Published, Duplicates int
	// Elapsed is the time from the first publish to the last
	// acknowledgement.
	Elapsed time.Duration
}

// Rate is the jobs acknowledged per second.
func (s PublishStats) Rate() float64 {
	if s.Elapsed <= 0 {
		return 0
	}
	return float64(s.Published) / s.Elapsed.Seconds()
}

// ErrNoStream means the stream a batch is published to or read from does not
// exist: no worker has set the streams up yet (a worker creates them).
var ErrNoStream = errors.New("batch: no such stream: is a worker running? (it creates the streams)")

type inflight struct {
	fut jetstream.PubAckFuture
	msg *nats.Msg
}

// Publish publishes jobs to subject and waits for every acknowledgement.
// On error or cancellation it stops sending and returns what was
// acknowledged so far with the error; the jobs not acknowledged may or may
// not be stored, and sending them again is safe.
func (p *Publisher) Publish(ctx context.Context, subject string, jobs []wire.Job) (PublishStats, error) {
	maxPending := p.MaxPending
	if maxPending <= 0 {
		maxPending = 256
	}
	ackTimeout := p.AckTimeout
	if ackTimeout <= 0 {
		ackTimeout = 10 * time.Second
	}
	js, err := jetstream.New(p.NC,
		jetstream.WithPublishAsyncMaxPending(maxPending+2), // this window, plus one being sent and one being retried
		jetstream.WithPublishAsyncTimeout(ackTimeout))
	if err != nil {
		return PublishStats{}, fmt.Errorf("batch: publish: %w", err)
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	refused, restore := watchRefusal(p.NC, publishNeedle(subject))
	defer restore()
	go func() {
		select {
		case err := <-refused:
			cancel(fmt.Errorf("batch: publish to %s: %w", subject, err))
		case <-ctx.Done():
		}
	}()
	window := make(chan inflight, maxPending)
	var stats PublishStats
	collected := make(chan struct{})
	start := time.Now()
	go func() {
		defer close(collected)
		for f := range window {
			ack, err := p.await(ctx, js, f)
			if err != nil {
				cancel(err)
				continue // drain the window; its jobs are reported unacknowledged
			}
			stats.Published++
			if ack.Duplicate {
				stats.Duplicates++
			}
		}
	}()
	sendErr := p.send(ctx, js, subject, jobs, window)
	close(window)
	<-collected
	stats.Elapsed = time.Since(start)
	if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
		return stats, cause
	}
	if sendErr != nil {
		return stats, sendErr
	}
	return stats, ctx.Err()
}

// send queues every job, blocking while the window is full.
func (p *Publisher) send(ctx context.Context, js jetstream.JetStream, subject string, jobs []wire.Job, window chan<- inflight) error {
	for i := range jobs {
		if ctx.Err() != nil {
			return nil // Publish reports the cause
		}
		data, err := json.Marshal(&jobs[i])
		if err != nil {
			return fmt.Errorf("batch: encode job %s: %w", jobs[i].ID, err)
		}
		m := nats.NewMsg(subject)
		m.Data = data
		m.Header.Set(jetstream.MsgIDHeader, jobs[i].ID)
		fut, err := js.PublishMsgAsync(m)
		if err != nil {
			return fmt.Errorf("batch: publish to %s: %w", subject, err)
		}
		select {
		case window <- inflight{fut: fut, msg: m}:
		case <-ctx.Done():
			return nil
		}
	}
	return nil
}

// A job whose acknowledgement failed is sent again at once (the failure
// itself took the ack timeout, or a lost connection that a resend waits out);
// when that fails too, the next resends wait from retryFirst, growing to
// retryMax, so a restarting server or a stream leader being elected is not
// asked again and again within a millisecond.
const (
	retryFirst = 100 * time.Millisecond
	retryMax   = 2 * time.Second
)

// await waits for one acknowledgement; a failed one is retried
// synchronously with the same Nats-Msg-Id, with backoff between tries.
func (p *Publisher) await(ctx context.Context, js jetstream.JetStream, f inflight) (*jetstream.PubAck, error) {
	var asyncErr error
	select {
	case ack := <-f.fut.Ok():
		return ack, nil
	case asyncErr = <-f.fut.Err():
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	}
	retries := p.Retries
	if retries <= 0 {
		retries = 3
	}
	if noStream(asyncErr) {
		return nil, fmt.Errorf("%w (%s): %w", ErrNoStream, f.msg.Subject, asyncErr)
	}
	b := backoff.NewExponentialBackOff()
	b.InitialInterval, b.MaxInterval, b.MaxElapsedTime = retryFirst, retryMax, 0
	send := func() (*jetstream.PubAck, error) {
		ack, err := js.PublishMsg(ctx, f.msg)
		if noStream(err) {
			return nil, backoff.Permanent(err)
		}
		return ack, err
	}
	ack, err := backoff.RetryWithData(send, backoff.WithContext(backoff.WithMaxRetries(b, uint64(retries-1)), ctx))
	switch {
	case err == nil:
		return ack, nil
	case ctx.Err() != nil:
		return nil, context.Cause(ctx)
	case noStream(err):
		return nil, fmt.Errorf("%w (%s): %w", ErrNoStream, f.msg.Subject, err)
	}
	return nil, fmt.Errorf("batch: publish job %s: %w", f.msg.Header.Get(jetstream.MsgIDHeader), err)
}

func noStream(err error) bool {
	return errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders)
}
