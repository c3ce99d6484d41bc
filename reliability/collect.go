package reliability

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/recoverpasscode/recoverpasscode/graph/graphsim"
	"github.com/recoverpasscode/recoverpasscode/queue"
	"github.com/recoverpasscode/recoverpasscode/wire"
)

// pollEvery is how often Settle re-reads the stream state: JetStream has no
// notification for "the work queue became empty".
const pollEvery = 100 * time.Millisecond

// Settle waits until the jobs stream is empty and no job awaits an
// acknowledgement: every submitted job has then been finished, and its
// result stored, since workers acknowledge only after storing it. Errors
// reading the state (a cluster electing a leader, a server restarting) are
// retried. On ctx's end it returns an error with the last state seen.
func Settle(ctx context.Context, js jetstream.JetStream, names wire.Names) error {
	tick := time.NewTicker(pollEvery)
	defer tick.Stop()
	last := "no state read yet"
	for {
		left, ackPending, pending, err := queueState(ctx, js, names)
		switch {
		case err != nil:
			last = err.Error()
		case left == 0 && ackPending == 0 && pending == 0:
			return nil
		default:
			last = fmt.Sprintf("%d jobs in the stream, %d awaiting an acknowledgement, %d not yet delivered", left, ackPending, pending)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("reliability: settle: %w: %s", ctx.Err(), last)
		case <-tick.C:
		}
	}
}

// queueState reads the jobs stream's size and the workers' consumer.
func queueState(ctx context.Context, js jetstream.JetStream, names wire.Names) (left uint64, ackPending int, pending uint64, err error) {
	rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	stream, err := js.Stream(rctx, names.JobsStream())
	if err != nil {
		return 0, 0, 0, err
	}
	info, err := stream.Info(rctx)
	if err != nil {
		return 0, 0, 0, err
	}
	cons, err := stream.Consumer(rctx, queue.ConsumerName)
	if err != nil {
		return 0, 0, 0, err
	}
	ci, err := cons.Info(rctx)
	if err != nil {
		return 0, 0, 0, err
	}
	return info.State.Msgs, ci.NumAckPending, ci.NumPending, nil
}

// Collect reads what Check judges: every stored result and dead letter,
// duplicates included, Graph's call log, and the jobs stream's state.
func Collect(ctx context.Context, js jetstream.JetStream, names wire.Names, gs *graphsim.Server) (Observed, error) {
	var obs Observed
	var err error
	obs.JobsLeft, obs.AckPending, obs.Pending, err = queueState(ctx, js, names)
	if err != nil {
		return obs, fmt.Errorf("reliability: collect: jobs stream: %w", err)
	}
	err = readAll(ctx, js, names.ResultsStream(), func(data []byte) error {
		var r wire.Result
		if err := json.Unmarshal(data, &r); err != nil {
			return fmt.Errorf("result is not JSON: %w: %.200s", err, data)
		}
		obs.Results = append(obs.Results, r)
		return nil
	})
	if err != nil {
		return obs, fmt.Errorf("reliability: collect: %w", err)
	}
	err = readAll(ctx, js, names.DLQStream(), func(data []byte) error {
		var d wire.DeadLetter
		if err := json.Unmarshal(data, &d); err != nil {
			return fmt.Errorf("dead letter is not JSON: %w: %.200s", err, data)
		}
		obs.DeadLetters = append(obs.DeadLetters, d)
		return nil
	})
	if err != nil {
		return obs, fmt.Errorf("reliability: collect: %w", err)
	}
	obs.Calls = gs.Calls()
	return obs, nil
}

// readAll hands every message of stream, in order, to each.
func readAll(ctx context.Context, js jetstream.JetStream, stream string, each func([]byte) error) error {
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return fmt.Errorf("%s: %w", stream, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return fmt.Errorf("%s: %w", stream, err)
	}
	if info.State.Msgs == 0 {
		return nil
	}
	last := info.State.LastSeq
	cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return fmt.Errorf("%s: %w", stream, err)
	}
	for {
		batch, err := cons.Fetch(1000, jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return fmt.Errorf("%s: %w", stream, err)
		}
		got := 0
		for msg := range batch.Messages() {
			got++
			if err := each(msg.Data()); err != nil {
				return fmt.Errorf("%s: %w", stream, err)
			}
			meta, err := msg.Metadata()
			if err != nil {
				return fmt.Errorf("%s: %w", stream, err)
			}
			if meta.Sequence.Stream >= last {
				return nil
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			return fmt.Errorf("%s: %w", stream, err)
		}
		if got == 0 {
			return fmt.Errorf("%s: no message after waiting, before sequence %d", stream, last)
		}
	}
}
