package gateway

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
)

// scan describes a forward read of the messages a stream holds under one
// subject filter, from a start (sequence or time) up to, not including,
// a stop sequence.
type scan struct {
	stream string
	filter string
	// StartSeq, else StartTime, else the first message.
	startSeq  uint64
	startTime time.Time
	// stopSeq ends the read before this sequence; 0 reads to the end.
	stopSeq uint64
	// headersOnly reads subjects and headers without the bodies.
	headersOnly bool
}

// fetchBatch is how many messages one pull asks for.
const fetchBatch = 256

// read passes each message of the scan to fn, in stream order, until fn
// returns false or the scan ends. It reads through a consumer of its own
// (no acknowledgements, in memory), created with the filter in its
// subject so that NATS permissions can bound it, and deleted at the end.
// Only the messages stored when it starts are read.
func (st *store) read(ctx context.Context, sc scan, fn func(jetstream.Msg) bool) error {
	if err := st.connected(); err != nil {
		return err
	}
	cfg := jetstream.ConsumerConfig{
		Name:              nuid.Next(),
		FilterSubject:     sc.filter,
		DeliverPolicy:     jetstream.DeliverAllPolicy,
		AckPolicy:         jetstream.AckNonePolicy,
		InactiveThreshold: 30 * time.Second,
		MemoryStorage:     true,
		Replicas:          1,
		HeadersOnly:       sc.headersOnly,
	}
	switch {
	case sc.startSeq > 0:
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, sc.startSeq
	case !sc.startTime.IsZero():
		t := sc.startTime
		cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &t
	}
	cctx, cancel := context.WithTimeout(ctx, st.timeout)
	cons, err := st.js.CreateConsumer(cctx, sc.stream, cfg)
	cancel()
	if err != nil {
		return st.wrap(err)
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), st.timeout)
		defer cancel()
		_ = st.js.DeleteConsumer(dctx, sc.stream, cfg.Name)
	}()
	pending := cons.CachedInfo().NumPending
	for pending > 0 {
		more, n, err := st.fetch(ctx, cons, int(min(pending, fetchBatch)), sc, fn)
		if err != nil || !more {
			return err
		}
		if n == 0 { // expired meanwhile (MaxAge, TTL)
			return nil
		}
		pending -= uint64(n)
	}
	return nil
}

// fetch pulls up to n messages of the scan and passes them to fn; more
// is false once the scan is over.
func (st *store) fetch(ctx context.Context, cons jetstream.Consumer, n int, sc scan, fn func(jetstream.Msg) bool) (more bool, got int, err error) {
	fctx, cancel := context.WithTimeout(ctx, st.timeout)
	defer cancel()
	batch, err := cons.Fetch(n, jetstream.FetchContext(fctx))
	if err != nil {
		return false, 0, st.wrap(err)
	}
	for msg := range batch.Messages() {
		got++
		meta, err := msg.Metadata()
		if err != nil {
			return false, got, fmt.Errorf("gateway: read %s: %w", sc.stream, err)
		}
		if sc.stopSeq > 0 && meta.Sequence.Stream >= sc.stopSeq {
			return false, got, nil
		}
		if !fn(msg) {
			return false, got, nil
		}
	}
	if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) && !errors.Is(err, context.DeadlineExceeded) {
		return false, got, st.wrap(err)
	}
	return true, got, nil
}
