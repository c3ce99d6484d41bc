package writeback

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/recoverpasscode/recoverpasscode/wire"
)

// Deliverer delivers the results of every configured source to its
// endpoints. Create it with New and call Run once; Started and Endpoints
// are safe to call at any time from any goroutine. Any number of processes
// may run one with the same configuration, and they share the work.
type Deliverer struct {
	cfg       Config
	js        jetstream.JetStream
	policy    policy
	metrics   *metrics
	log       zerolog.Logger
	endpoints []*endpoint
	started   chan struct{}

	// Set up by Run before any endpoint starts.
	store         *Store
	results       jetstream.Stream
	confirmations jetstream.Stream
}

// Endpoint describes a configured endpoint, for logs and --dev.
type Endpoint struct {
	Source, Name, Kind string
	// Target is the URL results go to, without its query (webhook), or the
	// instance or site (ServiceNow, Jira).
	Target string
}

// New validates cfg, reads its secret files and prepares one endpoint per
// webhook, ServiceNow instance and Jira site. It does not touch NATS.
func New(js jetstream.JetStream, cfg Config) (*Deliverer, error) {
	if js == nil {
		return nil, errors.New("writeback: a JetStream context is required")
	}
	cfg.defaults()
	specs, err := cfg.endpoints()
	if err != nil {
		return nil, fmt.Errorf("writeback: %w", err)
	}
	d := &Deliverer{
		cfg:     cfg,
		js:      js,
		policy:  newPolicy(cfg),
		metrics: newMetrics(cfg.Registerer),
		log:     cfg.Logger.With().Str("component", "writeback").Logger(),
		started: make(chan struct{}),
	}
	for _, s := range specs {
		d.endpoints = append(d.endpoints, newEndpoint(d, s))
	}
	return d, nil
}

// Run creates (or finds) each endpoint's durable consumers, retrying while
// NATS or the streams are not there yet, then delivers until ctx ends. On
// return every delivery in flight has been handed back to JetStream. It
// returns nil after ctx ends, and at once when no endpoint is configured.
func (d *Deliverer) Run(ctx context.Context) error {
	if len(d.endpoints) == 0 {
		close(d.started)
		return nil
	}
	if err := d.setUp(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	close(d.started)
	for _, e := range d.endpoints {
		d.log.Info().Str("source", e.spec.source).Str("endpoint", e.spec.name).Str("kind", e.spec.kind).Msg("delivering results")
	}
	var wg sync.WaitGroup
	for _, e := range d.endpoints {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e.run(ctx)
		}()
	}
	wg.Wait()
	return nil
}

// Started is closed once Run has set up every endpoint's consumers and
// begun delivering.
func (d *Deliverer) Started() <-chan struct{} { return d.started }

// Endpoints lists the configured endpoints.
func (d *Deliverer) Endpoints() []Endpoint {
	out := make([]Endpoint, 0, len(d.endpoints))
	for _, e := range d.endpoints {
		out = append(out, Endpoint{Source: e.spec.source, Name: e.spec.name, Kind: e.spec.kind, Target: e.describe()})
	}
	return out
}

// Run delivers the results of cfg's sources until ctx ends: New, then
// Deliverer.Run.
func Run(ctx context.Context, js jetstream.JetStream, cfg Config) error {
	d, err := New(js, cfg)
	if err != nil {
		return err
	}
	return d.Run(ctx)
}

// setUp opens the bucket and the results stream and creates the
// consumers, retrying with backoff until it succeeds or ctx ends.
func (d *Deliverer) setUp(ctx context.Context) error {
	b := backoff.NewExponentialBackOff(backoff.WithInitialInterval(500*time.Millisecond), backoff.WithMaxInterval(30*time.Second), backoff.WithMaxElapsedTime(0))
	return backoff.RetryNotify(func() error {
		err := d.trySetUp(ctx)
		if ctx.Err() != nil {
			return backoff.Permanent(ctx.Err())
		}
		return err
	}, backoff.WithContext(b, ctx), func(err error, wait time.Duration) {
		d.log.Warn().Err(err).Dur("retry_in", wait).Msg("write-back cannot start yet")
	})
}

func (d *Deliverer) trySetUp(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	store, err := OpenStore(ctx, d.js, d.cfg.Names)
	if err != nil {
		return err
	}
	results, err := d.js.Stream(ctx, d.cfg.Names.ResultsStream())
	if err != nil {
		return fmt.Errorf("writeback: results stream %s: %w", d.cfg.Names.ResultsStream(), err)
	}
	confirmations, err := d.js.Stream(ctx, d.cfg.Names.ConfirmationsStream())
	if err != nil {
		return fmt.Errorf("writeback: confirmations stream %s: %w", d.cfg.Names.ConfirmationsStream(), err)
	}
	d.store, d.results, d.confirmations = store, results, confirmations
	for _, e := range d.endpoints {
		if err := e.setUp(ctx); err != nil {
			return err
		}
	}
	return nil
}

// consumerName is the durable consumer of an endpoint, on the results
// stream and on the deliveries bucket's stream. Endpoint names have no
// '_', so no two endpoints share one.
func consumerName(source, endpoint string) string {
	return "writeback_" + source + "_" + endpoint
}

// kvStream is the stream behind a KV bucket.
func kvStream(bucket string) string { return "KV_" + bucket }

func (d *Deliverer) resultsConsumer(s endpointSpec) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:       consumerName(s.source, s.name),
		Description:   fmt.Sprintf("recoverpasscode write-back: results of %s to %s %s", s.source, s.kind, s.name),
		FilterSubject: d.cfg.Names.ResultsOf(s.source),
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       d.cfg.AckWait,
		MaxDeliver:    -1, // the policy ends each delivery
		MaxAckPending: d.cfg.MaxAckPending,
		// An endpoint gets the results stored from its first start on;
		// the durable consumer remembers where it is across restarts.
		DeliverPolicy: jetstream.DeliverNewPolicy,
	}
}

func (d *Deliverer) redeliveryConsumer(s endpointSpec) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:       consumerName(s.source, s.name),
		Description:   fmt.Sprintf("recoverpasscode write-back: redeliveries to %s %s of %s", s.kind, s.name, s.source),
		FilterSubject: "$KV." + d.cfg.Names.DeliveriesBucket() + "." + failureKey(s.source, s.name, "*"),
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       d.cfg.AckWait,
		MaxDeliver:    -1,
		MaxAckPending: 100,
		DeliverPolicy: jetstream.DeliverNewPolicy,
	}
}

// names is the configuration's names.
func (d *Deliverer) names() wire.Names { return d.cfg.Names }
