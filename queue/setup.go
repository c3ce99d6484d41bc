package queue

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/recoverpasscode/recoverpasscode/wire"
)

// DefaultAckWait is how long a job may go without an ack or progress
// signal before JetStream redelivers it, when Setup.AckWait is zero.
const DefaultAckWait = 30 * time.Second

// Setup describes the JetStream objects a worker creates or updates at
// start. The zero value is usable on a single server.
type Setup struct {
	Names wire.Names
	// Replicas for every stream and bucket: 1 on a single server, 3 on a
	// cluster. Defaults to 1.
	Replicas int
	// DuplicateWindow of the jobs stream: a job re-sent with the same
	// Nats-Msg-Id within it is stored once. Defaults to 1h (the minimum).
	DuplicateWindow time.Duration
	// ResultsMaxAge is how long results are kept. Defaults to 30 days.
	ResultsMaxAge time.Duration
	// DLQMaxAge is how long dead letters are kept. Defaults to 30 days.
	DLQMaxAge time.Duration
	// AuditMaxAge is how long audit events are kept. Defaults to 400 days.
	AuditMaxAge time.Duration
	// AckWait is how long a job may go without an ack or progress signal
	// before it is redelivered. Defaults to DefaultAckWait (30s).
	AckWait time.Duration
	// MaxAckPending bounds jobs in flight across the fleet. Defaults to
	// 10000.
	MaxAckPending int
	// RequestsTTL is how long the HTTP gateway's record of a submitted job
	// lives in the requests bucket: as long as a retried request with the
	// same Idempotency-Key finds its job. Set it to the idempotency records'
	// TTL (RECOVER_KEYS_TTL). Defaults to 24h.
	RequestsTTL time.Duration
}

func (s *Setup) defaults() {
	if s.Replicas == 0 {
		s.Replicas = 1
	}
	if s.DuplicateWindow < time.Hour {
		s.DuplicateWindow = time.Hour
	}
	if s.ResultsMaxAge == 0 {
		s.ResultsMaxAge = 30 * 24 * time.Hour
	}
	if s.DLQMaxAge == 0 {
		s.DLQMaxAge = 30 * 24 * time.Hour
	}
	if s.AuditMaxAge == 0 {
		s.AuditMaxAge = 400 * 24 * time.Hour
	}
	if s.AckWait == 0 {
		s.AckWait = DefaultAckWait
	}
	if s.MaxAckPending == 0 {
		s.MaxAckPending = 10000
	}
	if s.RequestsTTL <= 0 {
		s.RequestsTTL = 24 * time.Hour
	}
}

// Streams returns the configuration of every stream.
func (s Setup) Streams() []jetstream.StreamConfig {
	s.defaults()
	n := s.Names
	return []jetstream.StreamConfig{
		{
			Name:        n.JobsStream(),
			Description: "recoverPasscode jobs, consumed once by the worker fleet",
			Subjects:    []string{n.JobsWildcard()},
			Retention:   jetstream.WorkQueuePolicy,
			Storage:     jetstream.FileStorage,
			Replicas:    s.Replicas,
			Duplicates:  s.DuplicateWindow,
			MaxMsgSize:  1 << 20,
		},
		{
			Name:        n.ResultsStream(),
			Description: "one result per recoverPasscode job",
			Subjects:    []string{n.ResultsWildcard()},
			Retention:   jetstream.LimitsPolicy,
			Storage:     jetstream.FileStorage,
			Replicas:    s.Replicas,
			MaxAge:      s.ResultsMaxAge,
			Duplicates:  s.DuplicateWindow,
		},
		{
			Name:        n.DLQStream(),
			Description: "recoverPasscode jobs that could not be processed, with the reason",
			Subjects:    []string{n.DLQWildcard()},
			Retention:   jetstream.LimitsPolicy,
			Storage:     jetstream.FileStorage,
			Replicas:    s.Replicas,
			MaxAge:      s.DLQMaxAge,
			Duplicates:  s.DuplicateWindow,
		},
		{
			Name:        n.AuditStream(),
			Description: "one event per Graph call and per terminal decision",
			Subjects:    []string{n.AuditWildcard()},
			Retention:   jetstream.LimitsPolicy,
			Storage:     jetstream.FileStorage,
			Replicas:    s.Replicas,
			MaxAge:      s.AuditMaxAge,
			Duplicates:  s.DuplicateWindow,
			// history.Reader reads a device's events with direct gets by
			// subject (answered by any replica), never through a consumer.
			AllowDirect: true,
		},
	}
}

// MaxRequestSize bounds one record of the requests bucket, in bytes.
const MaxRequestSize = 4 << 10

// RequestsBucket returns the configuration of the HTTP gateway's requests
// bucket (wire.Names.RequestsBucket): one record per job submitted over
// HTTP, keyed <source>.<jobId>, kept RequestsTTL. The workers create it
// with their other objects, so that the gateway's NATS user needs no right
// to create anything.
func (s Setup) RequestsBucket() jetstream.KeyValueConfig {
	s.defaults()
	return jetstream.KeyValueConfig{
		Bucket:       s.Names.RequestsBucket(),
		Description:  "recoverpasscode HTTP gateway: one record per job submitted over HTTP",
		History:      1,
		TTL:          s.RequestsTTL,
		MaxValueSize: MaxRequestSize,
		Storage:      jetstream.FileStorage,
		Replicas:     s.Replicas,
	}
}

// Consumer returns the configuration of the workers' durable pull consumer.
func (s Setup) Consumer() jetstream.ConsumerConfig {
	s.defaults()
	return jetstream.ConsumerConfig{
		Durable:       ConsumerName,
		Description:   "recoverpasscode workers",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       s.AckWait,
		MaxDeliver:    -1, // the handler bounds deliveries and ends the job with a result
		MaxAckPending: s.MaxAckPending,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	}
}

// Ensure creates or updates every stream, the workers' consumer, the
// gateway's requests bucket and the given KeyValue buckets. It is
// idempotent and safe to run from every worker at start.
func (s Setup) Ensure(ctx context.Context, js jetstream.JetStream, buckets ...jetstream.KeyValueConfig) (jetstream.Consumer, error) {
	for _, cfg := range s.Streams() {
		if _, err := js.CreateOrUpdateStream(ctx, cfg); err != nil {
			return nil, fmt.Errorf("queue: stream %s: %w", cfg.Name, err)
		}
	}
	for _, cfg := range append([]jetstream.KeyValueConfig{s.RequestsBucket()}, buckets...) {
		if _, err := js.CreateOrUpdateKeyValue(ctx, cfg); err != nil {
			return nil, fmt.Errorf("queue: bucket %s: %w", cfg.Bucket, err)
		}
	}
	// And the write-back's bucket, so its deliverer creates nothing.
	if _, err := js.CreateOrUpdateKeyValue(ctx, s.DeliveriesBucket()); err != nil {
		return nil, fmt.Errorf("queue: bucket %s: %w", s.Names.DeliveriesBucket(), err)
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, s.Names.JobsStream(), s.Consumer())
	if err != nil {
		return nil, fmt.Errorf("queue: consumer %s: %w", ConsumerName, err)
	}
	return cons, nil
}

// ConsumerName is the durable pull consumer every worker shares.
const ConsumerName = "worker"

// MaxDeliveryRecord bounds one record of the deliveries bucket, in bytes:
// a failed delivery names its result and keeps an excerpt of the answer.
const MaxDeliveryRecord = 16 << 10

// DeliveriesBucket returns the configuration of the write-back's bucket
// (wire.Names.DeliveriesBucket): one record per failed delivery, kept as
// long as results are, and one per disabled endpoint. The workers create
// it with their other objects, so that the deliverer's NATS user needs no
// right to create anything.
func (s Setup) DeliveriesBucket() jetstream.KeyValueConfig {
	s.defaults()
	return jetstream.KeyValueConfig{
		Bucket:       s.Names.DeliveriesBucket(),
		Description:  "recoverpasscode write-back: failed deliveries and disabled endpoints",
		History:      1,
		TTL:          s.ResultsMaxAge,
		MaxValueSize: MaxDeliveryRecord,
		Storage:      jetstream.FileStorage,
		Replicas:     s.Replicas,
	}
}
