package console

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
)

// scan is a forward read of what a stream holds under a subject filter,
// from a start (sequence or time) up to, not including, a stop sequence.
type scan struct {
	stream string
	filter string
	// also are more filters, for a consumer with several.
	also      []string
	startSeq  uint64
	startTime time.Time
	stopSeq   uint64
	// max bounds the messages read; 0 is no bound.
	max int
}

// fetchBatch is how many messages one pull asks for.
const fetchBatch = 256

// read passes each message of the scan to fn, in stream order, until fn
// returns false or the scan ends, through a consumer of its own (no acks,
// in memory, deleted at the end, else gone after 30s idle). Only the
// messages stored when it starts are read.
func (s *Server) read(ctx context.Context, sc scan, fn func(jetstream.Msg) bool) error {
	cfg := jetstream.ConsumerConfig{
		Name:              nuid.Next(),
		FilterSubject:     sc.filter,
		DeliverPolicy:     jetstream.DeliverAllPolicy,
		AckPolicy:         jetstream.AckNonePolicy,
		InactiveThreshold: 30 * time.Second,
		MemoryStorage:     true,
		Replicas:          1,
	}
	if len(sc.also) > 0 {
		cfg.FilterSubject, cfg.FilterSubjects = "", append([]string{sc.filter}, sc.also...)
	}
	switch {
	case sc.startSeq > 0:
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, sc.startSeq
	case !sc.startTime.IsZero():
		t := sc.startTime
		cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &t
	}
	cctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	cons, err := s.js.CreateConsumer(cctx, sc.stream, cfg)
	cancel()
	if err != nil {
		return fmt.Errorf("read %s: %w", sc.stream, err)
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.Timeout)
		defer cancel()
		_ = s.js.DeleteConsumer(dctx, sc.stream, cfg.Name)
	}()
	pending := cons.CachedInfo().NumPending
	read := 0
	for pending > 0 {
		want := int(min(pending, fetchBatch))
		if sc.max > 0 {
			want = min(want, sc.max-read)
		}
		if want <= 0 {
			return nil
		}
		fctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
		batch, err := cons.Fetch(want, jetstream.FetchContext(fctx))
		if err != nil {
			cancel()
			return fmt.Errorf("read %s: %w", sc.stream, err)
		}
		got := 0
		for msg := range batch.Messages() {
			got++
			meta, err := msg.Metadata()
			if err != nil {
				cancel()
				return fmt.Errorf("read %s: %w", sc.stream, err)
			}
			if sc.stopSeq > 0 && meta.Sequence.Stream >= sc.stopSeq {
				cancel()
				return nil
			}
			if !fn(msg) {
				cancel()
				return nil
			}
		}
		err = batch.Error()
		cancel()
		if err != nil && !errors.Is(err, jetstream.ErrNoMessages) && !errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("read %s: %w", sc.stream, err)
		}
		if got == 0 { // expired meanwhile (MaxAge)
			return nil
		}
		read += got
		pending -= uint64(got)
	}
	return nil
}

// readBackward passes the messages of a stream under filter to fn newest
// first, reading backwards in growing windows of sequences, until fn
// returns false or maxScan sequences were examined. It returns the
// sequence the next read should stop before (0 at the stream's start).
func (s *Server) readBackward(ctx context.Context, stream, filter string, before uint64, maxScan uint64, fn func(jetstream.Msg) bool) (uint64, error) {
	st, err := s.js.Stream(ctx, stream)
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", stream, err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", stream, err)
	}
	first, hi := info.State.FirstSeq, info.State.LastSeq+1
	if before > 0 && before < hi {
		hi = before
	}
	window := uint64(1024)
	for scanned := uint64(0); hi > first && scanned < maxScan; window = min(window*4, maxScan) {
		lo := max(first, hi-min(window, hi-first))
		var chunk []jetstream.Msg
		if err := s.read(ctx, scan{stream: stream, filter: filter, startSeq: lo, stopSeq: hi}, func(m jetstream.Msg) bool {
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
