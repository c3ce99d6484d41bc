package queue

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// FollowConsumerName is the durable pull consumer of the follows stream
// that every worker's follower shares.
const FollowConsumerName = "follower"

// FollowStreams returns the streams of follow-through: the follows stream,
// one record per followed job still being followed (work-queue retention,
// one message per subject, so that storing a record's successor retires
// it), and the confirmations stream, one confirmation per followed job,
// deduplicated by job within DuplicateWindow and kept as long as results.
func (s Setup) FollowStreams() []jetstream.StreamConfig {
	s.defaults()
	n := s.Names
	return []jetstream.StreamConfig{
		{
			Name:              n.FollowsStream(),
			Description:       "recoverPasscode follows: one record per followed job, with its next poll time",
			Subjects:          []string{n.FollowsWildcard()},
			Retention:         jetstream.WorkQueuePolicy,
			Storage:           jetstream.FileStorage,
			Replicas:          s.Replicas,
			Duplicates:        s.DuplicateWindow,
			MaxMsgsPerSubject: 1,
			Discard:           jetstream.DiscardOld,
			MaxMsgSize:        16 << 10,
		},
		{
			Name:        n.ConfirmationsStream(),
			Description: "one confirmation per followed recoverPasscode job: what the device did",
			Subjects:    []string{n.ConfirmationsWildcard()},
			Retention:   jetstream.LimitsPolicy,
			Storage:     jetstream.FileStorage,
			Replicas:    s.Replicas,
			MaxAge:      s.ResultsMaxAge,
			Duplicates:  s.DuplicateWindow,
		},
	}
}

// FollowConsumer returns the configuration of the followers' durable pull
// consumer. Its records wait out their poll times as negative
// acknowledgements with a delay, so every one being followed is pending:
// MaxAckPending is unbounded, and Fetch bounds the work in hand.
func (s Setup) FollowConsumer() jetstream.ConsumerConfig {
	s.defaults()
	return jetstream.ConsumerConfig{
		Durable:       FollowConsumerName,
		Description:   "recoverpasscode followers",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       s.AckWait,
		MaxDeliver:    -1,
		MaxAckPending: -1,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	}
}

// ensureFollow creates or updates the follow streams and consumer.
func (s Setup) ensureFollow(ctx context.Context, js jetstream.JetStream) error {
	for _, cfg := range s.FollowStreams() {
		if _, err := js.CreateOrUpdateStream(ctx, cfg); err != nil {
			return fmt.Errorf("queue: stream %s: %w", cfg.Name, err)
		}
	}
	if _, err := js.CreateOrUpdateConsumer(ctx, s.Names.FollowsStream(), s.FollowConsumer()); err != nil {
		return fmt.Errorf("queue: consumer %s: %w", FollowConsumerName, err)
	}
	return nil
}
