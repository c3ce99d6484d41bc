// Package worker consumes jobs from JetStream with bounded concurrency,
// hands each to a job.Handler, publishes its result (and dead letter), and
// acknowledges it. It stops taking work while credentials are broken and
// shuts down softly first, hard on a second request.
package worker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/recoverpasscode/recoverpasscode/internal/timing"
	"github.com/recoverpasscode/recoverpasscode/job"
	"github.com/recoverpasscode/recoverpasscode/wire"
)

// Config wires a Worker. Fields marked required have no default.
type Config struct {
	NC       *nats.Conn          // required
	JS       jetstream.JetStream // required
	Consumer jetstream.Consumer  // required: the jobs consumer
	Names    wire.Names
	Handler  *job.Handler // required
	Health   *Health      // required
	// Telemetry records metrics and audit events. Required.
	Telemetry *Telemetry
	// Probe checks that a token can be had; refresh asks for a new one
	// rather than the cache's. Required.
	Probe func(ctx context.Context, refresh bool) error
	// Concurrency is the number of jobs in flight. Defaults to 32.
	Concurrency int
	// FetchWait bounds one pull request; it is also how long a soft stop
	// may take to stop pulling. Defaults to 1s.
	FetchWait time.Duration
	// DrainTimeout is how long a soft stop waits for jobs in flight before
	// handing them back. Defaults to 30s.
	DrainTimeout time.Duration
	Logger       zerolog.Logger
}

// Worker runs the consume loop. Create it with New; Run it once.
type Worker struct {
	cfg Config
	log zerolog.Logger

	credsBroken chan struct{} // signalled by a handler that found no token
	wg          sync.WaitGroup
}

// New checks cfg and applies defaults.
func New(cfg Config) (*Worker, error) {
	if cfg.NC == nil || cfg.JS == nil || cfg.Consumer == nil || cfg.Handler == nil || cfg.Health == nil || cfg.Probe == nil || cfg.Telemetry == nil {
		return nil, errors.New("worker: NC, JS, Consumer, Handler, Health, Probe and Telemetry are required")
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 32
	}
	if cfg.FetchWait == 0 {
		cfg.FetchWait = time.Second
	}
	if cfg.DrainTimeout == 0 {
		cfg.DrainTimeout = 30 * time.Second
	}
	return &Worker{cfg: cfg, log: cfg.Logger, credsBroken: make(chan struct{}, 1)}, nil
}

// Run consumes jobs until ctx is cancelled (a soft stop: no new jobs, jobs
// in flight finish within DrainTimeout) or hard is cancelled (jobs in
// flight are handed back at once). It returns nil after a clean stop.
func (w *Worker) Run(ctx, hard context.Context) error {
	jobCtx, cancelJobs := context.WithCancel(hard)
	defer cancelJobs()
	sem := make(chan struct{}, w.cfg.Concurrency)
	refresh := false
	for ctx.Err() == nil {
		if err := w.awaitCredentials(ctx, refresh); err != nil {
			break
		}
		w.consume(ctx, jobCtx, sem)
		refresh = true
	}
	return w.drain(cancelJobs)
}

// awaitCredentials blocks until a token can be had, retrying with backoff
// and keeping /readyz and the log honest meanwhile.
func (w *Worker) awaitCredentials(ctx context.Context, refresh bool) error {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = time.Second
	b.MaxInterval = 30 * time.Second
	b.MaxElapsedTime = 0
	for {
		err := w.cfg.Probe(ctx, refresh)
		w.cfg.Health.SetCredentials(err)
		if err == nil {
			return nil
		}
		if ctx.Err() == nil {
			w.cfg.Telemetry.metrics.TokenError()
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		delay := b.NextBackOff()
		w.log.Error().Err(err).Dur("retry_in", delay).Msg("cannot get a token: not taking jobs until one can be had")
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(delay):
		}
	}
}

// consume pulls jobs while slots are free, until ctx ends or a handler
// reports broken credentials.
func (w *Worker) consume(ctx, jobCtx context.Context, sem chan struct{}) {
	w.log.Info().Int("concurrency", w.cfg.Concurrency).Msg("taking jobs")
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.credsBroken:
			w.cfg.Telemetry.metrics.TokenError()
			w.cfg.Health.SetCredentials(errors.New("graph refused the token or none could be had"))
			return
		case sem <- struct{}{}:
		}
		free := 1
	fill:
		for free < cap(sem) {
			select {
			case sem <- struct{}{}:
				free++
			default:
				break fill
			}
		}
		got := w.fetch(ctx, jobCtx, sem, free)
		for ; got < free; got++ {
			<-sem
		}
	}
}

// fetch pulls up to n jobs and starts a handler for each; it returns how
// many it started (each owns one slot of sem).
func (w *Worker) fetch(ctx, jobCtx context.Context, sem chan struct{}, n int) int {
	batch, err := w.cfg.Consumer.Fetch(n, jetstream.FetchMaxWait(w.cfg.FetchWait))
	if err != nil {
		if ctx.Err() == nil {
			w.log.Warn().Err(err).Msg("pull from the jobs consumer failed")
			timing.Sleep(ctx, time.Second)
		}
		return 0
	}
	started := 0
	for msg := range batch.Messages() {
		started++
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			defer func() { <-sem }()
			w.handle(jobCtx, msg)
		}()
	}
	if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) && ctx.Err() == nil {
		w.log.Warn().Err(err).Msg("pull from the jobs consumer ended with an error")
	}
	return started
}

// drain waits for jobs in flight, then hands back whatever remains.
func (w *Worker) drain(cancelJobs context.CancelFunc) error {
	done := make(chan struct{})
	go func() { w.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-time.After(w.cfg.DrainTimeout):
		w.log.Warn().Dur("timeout", w.cfg.DrainTimeout).Msg("jobs still in flight after the drain timeout: handing them back")
		cancelJobs()
		<-done
		return fmt.Errorf("worker: drain timed out after %s", w.cfg.DrainTimeout)
	}
}
