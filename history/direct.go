package history

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/recoverpasscode/recoverpasscode/wire"
)

// stored is one message of the audit stream: its sequence and payload.
type stored struct {
	seq  uint64
	data []byte
}

// directRequest is the body of a direct get (nats-server's
// JSApiMsgGetRequest): the next messages matching a filter from a
// sequence on, in a batch, or the last one matching it.
type directRequest struct {
	Seq     uint64 `json:"seq,omitempty"`
	NextFor string `json:"next_by_subj,omitempty"`
	LastFor string `json:"last_by_subj,omitempty"`
	Batch   int    `json:"batch,omitempty"`
}

// Headers and status codes of direct get answers.
const (
	hdrStatus     = "Status"
	hdrSequence   = "Nats-Sequence"
	hdrNumPending = "Nats-Num-Pending"
	// statusEOB ends a batch; statusNotFound answers a request nothing
	// matches; statusNoResponders means no server serves direct gets on
	// the stream.
	statusEOB          = "204"
	statusNotFound     = "404"
	statusNoResponders = "503"
)

// batch asks for up to n messages matching filter at or after sequence
// start (0: the stream's start, which the server skips to the first
// match), oldest first, and returns them with the number of matching
// messages after the last one. The server may end a batch early (at its
// byte limit); the count after it says so.
func (r *Reader) batch(ctx context.Context, filter string, start uint64, n int) ([]stored, uint64, error) {
	var out []stored
	more, err := r.direct(ctx, directRequest{Seq: start, NextFor: filter, Batch: n}, func(m *nats.Msg) error {
		s, err := parse(m)
		out = append(out, s)
		return err
	})
	return out, more, err
}

// countFrom returns how many messages match filter at or after start.
func (r *Reader) countFrom(ctx context.Context, filter string, start uint64) (uint64, error) {
	got := uint64(0)
	more, err := r.direct(ctx, directRequest{Seq: start, NextFor: filter, Batch: 1}, func(*nats.Msg) error {
		got++
		return nil
	})
	return got + more, err
}

// lastSeq returns the sequence of the newest message matching filter.
func (r *Reader) lastSeq(ctx context.Context, filter string) (uint64, error) {
	var seq uint64
	_, err := r.direct(ctx, directRequest{LastFor: filter}, func(m *nats.Msg) error {
		s, err := parse(m)
		seq = s.seq
		return err
	})
	if err == nil && seq == 0 {
		err = errors.New("history: the device's newest event is gone")
	}
	return seq, err
}

// direct sends one direct get and hands each message of its answer to fn.
// It returns the count of matching messages after the batch (0 for a
// single get), 0 and no error when nothing matches.
func (r *Reader) direct(ctx context.Context, req directRequest, fn func(*nats.Msg) error) (uint64, error) {
	ctx, cancel := r.requestContext(ctx)
	defer cancel()
	body, err := json.Marshal(req)
	if err != nil {
		return 0, err
	}
	nc := r.js.Conn()
	sub, err := nc.SubscribeSync(nc.NewInbox())
	if err != nil {
		return 0, fmt.Errorf("history: subscribe: %w", err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := nc.PublishRequest(r.getSubject, sub.Subject, body); err != nil {
		return 0, fmt.Errorf("history: direct get: %w", err)
	}
	for {
		m, err := sub.NextMsgWithContext(ctx)
		if errors.Is(err, nats.ErrNoResponders) {
			return 0, ErrNoDirectGet
		}
		if err != nil {
			return 0, fmt.Errorf("history: direct get: %w", err)
		}
		switch status := m.Header.Get(hdrStatus); status {
		case "":
		case statusEOB:
			return pendingOf(m)
		case statusNotFound:
			return 0, nil
		case statusNoResponders:
			return 0, ErrNoDirectGet
		default:
			return 0, fmt.Errorf("history: direct get: status %s %s", status, m.Header.Get("Description"))
		}
		if err := fn(m); err != nil {
			return 0, err
		}
		if req.Batch == 0 {
			return 0, nil
		}
	}
}

// requestContext bounds one request by the JetStream context's default
// timeout when ctx has no deadline.
func (r *Reader) requestContext(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	d := r.js.Options().DefaultTimeout
	if d <= 0 {
		d = defaultTimeout
	}
	return context.WithTimeout(ctx, d)
}

// parse reads a direct get's message.
func parse(m *nats.Msg) (stored, error) {
	seq, err := strconv.ParseUint(m.Header.Get(hdrSequence), 10, 64)
	if err != nil {
		return stored{}, fmt.Errorf("history: direct get: sequence header: %w", err)
	}
	return stored{seq: seq, data: m.Data}, nil
}

// pendingOf reads the count of matching messages left after a batch.
func pendingOf(m *nats.Msg) (uint64, error) {
	n, err := strconv.ParseUint(m.Header.Get(hdrNumPending), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("history: direct get: pending header: %w", err)
	}
	return n, nil
}

// Permissions are the subjects the reader's NATS user must be allowed to
// publish to: the direct gets of the audit stream. The answers arrive on
// the connection's inboxes (NATS_INBOX_PREFIX), which it must be allowed to
// subscribe to. Direct gets take no filter in their subject, so this user
// may read every audit event: the console's reader, not a source's.
func Permissions(names wire.Names) []string {
	return []string{jetstream.DefaultAPIPrefix + "DIRECT.GET." + names.AuditStream()}
}
