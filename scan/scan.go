// Package scan reads what a JetStream stream holds under a subject filter,
// forwards or newest first, through short-lived consumers of its own. The
// gateway's job list and the console's pages read the streams this way.
package scan

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
)

// Range is a forward read of what a stream holds under a subject filter,
// from a start (sequence, else time, else the first message) up to, not
// including, a stop sequence.
type Range struct {
	Stream string
	Filter string
	// StartSeq, else StartTime, else the first message.
	StartSeq  uint64
	StartTime time.Time
	// StopSeq ends the read before this sequence; 0 reads to the end.
	StopSeq uint64
	// Max bounds the messages read; 0 is no bound.
	Max int
	// HeadersOnly reads subjects and headers without the bodies.
	HeadersOnly bool
}

// Reader reads ranges of streams. It is safe for concurrent use.
type Reader struct {
	JS jetstream.JetStream
	// Timeout bounds each call to NATS (consumer creation, one pull, the
	// stream's info). Defaults to 5s.
	Timeout time.Duration
}

// fetchBatch is how many messages one pull asks for.
const fetchBatch = 256

// window is the first window of a backward read, in sequences.
const window = 1024

func (r Reader) timeout() time.Duration {
	if r.Timeout <= 0 {
		return 5 * time.Second
	}
	return r.Timeout
}

// Forward passes each message of the range to fn, in stream order, until
// fn returns false or the range ends. It reads through a consumer of its
// own (no acknowledgements, in memory, deleted at the end, else gone after
// 30s idle), created with the filter in its subject so that NATS
// permissions can bound it. Only the messages stored when it starts are
// read.
func (r Reader) Forward(ctx context.Context, rg Range, fn func(jetstream.Msg) bool) error {
	cfg := jetstream.ConsumerConfig{
		Name:              nuid.Next(),
		FilterSubject:     rg.Filter,
		DeliverPolicy:     jetstream.DeliverAllPolicy,
		AckPolicy:         jetstream.AckNonePolicy,
		InactiveThreshold: 30 * time.Second,
		MemoryStorage:     true,
		Replicas:          1,
		HeadersOnly:       rg.HeadersOnly,
	}
	switch {
	case rg.StartSeq > 0:
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, rg.StartSeq
	case !rg.StartTime.IsZero():
		t := rg.StartTime
		cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &t
	}
	cctx, cancel := context.WithTimeout(ctx, r.timeout())
	cons, err := r.JS.CreateConsumer(cctx, rg.Stream, cfg)
	cancel()
	if err != nil {
		return fmt.Errorf("read %s: %w", rg.Stream, err)
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.timeout())
		defer cancel()
		_ = r.JS.DeleteConsumer(dctx, rg.Stream, cfg.Name)
	}()
	pending := cons.CachedInfo().NumPending
	read := 0
	for pending > 0 {
		want := int(min(pending, fetchBatch))
		if rg.Max > 0 {
			want = min(want, rg.Max-read)
		}
		if want <= 0 {
			return nil
		}
		more, got, err := r.fetch(ctx, cons, want, rg, fn)
		if err != nil || !more {
			return err
		}
		if got == 0 { // expired meanwhile (MaxAge, TTL)
			return nil
		}
		read += got
		pending -= uint64(got)
	}
	return nil
}

// fetch pulls up to n messages of the range and passes them to fn; more
// is false once the read is over.
func (r Reader) fetch(ctx context.Context, cons jetstream.Consumer, n int, rg Range, fn func(jetstream.Msg) bool) (more bool, got int, err error) {
	fctx, cancel := context.WithTimeout(ctx, r.timeout())
	defer cancel()
	batch, err := cons.Fetch(n, jetstream.FetchContext(fctx))
	if err != nil {
		return false, 0, fmt.Errorf("read %s: %w", rg.Stream, err)
	}
	for msg := range batch.Messages() {
		got++
		meta, err := msg.Metadata()
		if err != nil {
			return false, got, fmt.Errorf("read %s: %w", rg.Stream, err)
		}
		if rg.StopSeq > 0 && meta.Sequence.Stream >= rg.StopSeq {
			return false, got, nil
		}
		if !fn(msg) {
			return false, got, nil
		}
	}
	if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) && !errors.Is(err, context.DeadlineExceeded) {
		return false, got, fmt.Errorf("read %s: %w", rg.Stream, err)
	}
	return true, got, nil
}

// Backward passes the messages of a stream under filter that were stored
// before sequence before (0: all of them) to fn, newest first, reading
// backwards in growing windows of sequences, until fn returns false or
// maxScan sequences were examined. next is the sequence of the message fn
// returned false on, else where the read stopped (a later read continues
// before it), else 0 once the stream's start was reached.
func (r Reader) Backward(ctx context.Context, stream, filter string, before, maxScan uint64, fn func(jetstream.Msg) bool) (next uint64, err error) {
	ictx, cancel := context.WithTimeout(ctx, r.timeout())
	st, err := r.JS.Stream(ictx, stream) // the lookup brings the stream's current info
	cancel()
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", stream, err)
	}
	state := st.CachedInfo().State
	first, hi := state.FirstSeq, state.LastSeq+1
	if before > 0 && before < hi {
		hi = before
	}
	w := uint64(window)
	for scanned := uint64(0); hi > first && scanned < maxScan; w = min(w*4, maxScan) {
		lo := max(first, hi-min(w, hi-first))
		var chunk []jetstream.Msg
		if err := r.Forward(ctx, Range{Stream: stream, Filter: filter, StartSeq: lo, StopSeq: hi}, func(m jetstream.Msg) bool {
			chunk = append(chunk, m)
			return true
		}); err != nil {
			return 0, err
		}
		for i := len(chunk) - 1; i >= 0; i-- {
			if !fn(chunk[i]) {
				meta, _ := chunk[i].Metadata()
				return meta.Sequence.Stream, nil
			}
		}
		scanned += hi - lo
		hi = lo
	}
	if hi > first {
		return hi, nil
	}
	return 0, nil
}
