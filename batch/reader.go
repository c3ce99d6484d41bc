package batch

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// StreamReader reads the messages a stream holds under one subject filter,
// oldest first: those stored when it was opened (the backlog), then each
// new one as it arrives. It uses an ordered consumer, which a source's NATS
// user may create on its own results. A StreamReader is not safe for
// concurrent use.
type StreamReader struct {
	it      jetstream.MessagesContext
	backlog int
	read    int
}

// OpenStream starts reading stream's messages matching filter. A NATS user
// the server does not allow to read them gets the server's refusal at once
// rather than after a request timeout.
func OpenStream(ctx context.Context, js jetstream.JetStream, stream, filter string) (*StreamReader, error) {
	cctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	refused, restore := watchRefusal(js.Conn(), `"$JS.API.CONSUMER.CREATE.`+stream+`.`)
	defer restore()
	go func() {
		select {
		case err := <-refused:
			cancel(err)
		case <-cctx.Done():
		}
	}()
	cons, err := js.OrderedConsumer(cctx, stream, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{filter},
		DeliverPolicy:  jetstream.DeliverAllPolicy,
	})
	if cause := context.Cause(cctx); err != nil && ctx.Err() == nil && cause != nil && !errors.Is(cause, context.Canceled) {
		err = cause // the server's refusal, rather than the timeout it caused
	}
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, fmt.Errorf("%w (%s)", ErrNoStream, stream)
	}
	if err != nil {
		return nil, fmt.Errorf("batch: read %s: %w", stream, err)
	}
	it, err := cons.Messages() // on the consumer just created
	if err != nil {
		return nil, fmt.Errorf("batch: read %s: %w", stream, err)
	}
	r := &StreamReader{it: it}
	if info := cons.CachedInfo(); info != nil {
		r.backlog = int(info.NumPending) // as the consumer was created
	}
	return r, nil
}

// Backlog is the number of messages stored when the reader was opened.
func (r *StreamReader) Backlog() int { return r.backlog }

// CaughtUp reports whether every message of the backlog has been read.
func (r *StreamReader) CaughtUp() bool { return r.read >= r.backlog }

// Next returns the next message; it waits for one when none is stored yet.
func (r *StreamReader) Next(ctx context.Context) (jetstream.Msg, error) {
	msg, err := r.it.Next(jetstream.NextContext(ctx))
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("batch: read: %w", err)
	}
	r.read++
	return msg, nil
}

// backlogIdle bounds the wait for a message of the backlog: stored
// messages come at once, so a longer silence means the server is gone.
const backlogIdle = 30 * time.Second

// ErrStalled means stored messages stopped arriving: the connection to NATS
// was lost, or the server stopped answering.
var ErrStalled = errors.New("batch: stored messages stopped arriving for 30s: is the connection to NATS up?")

// NextStored returns the next message of the backlog, failing with
// ErrStalled rather than waiting forever when none comes.
func (r *StreamReader) NextStored(ctx context.Context) (jetstream.Msg, error) {
	ictx, cancel := context.WithTimeoutCause(ctx, backlogIdle, ErrStalled)
	defer cancel()
	msg, err := r.Next(ictx)
	if err != nil && ctx.Err() == nil && errors.Is(context.Cause(ictx), ErrStalled) {
		return nil, ErrStalled
	}
	return msg, err
}

// Close stops reading; the server removes the ordered consumer once idle.
func (r *StreamReader) Close() { r.it.Stop() }

// watchRefusal reports on refused a permissions violation whose text holds
// needle: the server answers a refused publish or request on the
// connection, not to the publisher, which would otherwise wait for its
// timeout. restore puts the connection's error handler back.
func watchRefusal(nc *nats.Conn, needle string) (refused <-chan error, restore func()) {
	ch := make(chan error, 1)
	prev := nc.ErrorHandler()
	nc.SetErrorHandler(func(c *nats.Conn, sub *nats.Subscription, err error) {
		if errors.Is(err, nats.ErrPermissionViolation) && strings.Contains(err.Error(), needle) {
			select {
			case ch <- err:
			default:
			}
		}
		if prev != nil {
			prev(c, sub, err)
		}
	})
	return ch, func() { nc.SetErrorHandler(prev) }
}

// publishNeedle is how a refused publish to subject is named in the
// server's permissions violation.
func publishNeedle(subject string) string { return "Publish to " + strconv.Quote(subject) }
