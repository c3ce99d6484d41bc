// Package worker is the consume loop: it pulls jobs from JetStream only for
// free slots (at most Concurrency in flight), hands each to a Handler,
// publishes its result (and a dead letter for a failed or rejected job),
// and acknowledges, terminates or hands it back as the handler decided. It
// stops taking work while credentials are broken, shuts down softly first
// (jobs in flight finish), hard on a second request, and owns what it
// starts: handler goroutines and the queue that stores again the audit
// events the stream did not confirm are joined before Run returns.
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

// Handler processes one delivery of a job and says what to do with it.
// *job.Handler is the production one. It must be safe for concurrent use
// and return promptly once ctx ends.
type Handler interface {
	Handle(ctx context.Context, d job.Delivery) job.Outcome
}

var _ Handler = (*job.Handler)(nil)

// Observer learns what the loop does, for metrics and the audit trail.
// *Telemetry is the production one. It must be safe for concurrent use and
// return quickly.
type Observer interface {
	// InFlight adds delta to the jobs being processed.
	InFlight(delta int)
	// TokenError counts a failure to get a token.
	TokenError()
	// Finished records a job's terminal decision, after its result (and
	// dead letter, if deadLettered) was stored.
	Finished(res *wire.Result, deadLettered bool)
}

var _ Observer = (*Telemetry)(nil)

// Config wires a Worker. Fields marked required have no default.
type Config struct {
	NC *nats.Conn // required
	// JS publishes results and dead letters. Required. It is also the
	// JetStream context the Telemetry publishes audit events through and
	// whose asynchronous publish error handler is Audit.NotStored: a stop
	// waits for its audit events in flight.
	JS       jetstream.JetStream
	Consumer jetstream.Consumer // required: the jobs consumer
	Names    wire.Names
	Handler  Handler // required
	Health   *Health // required
	// Telemetry records metrics and audit events. Required.
	Telemetry Observer
	// Audit stores again the audit events the stream did not confirm; the
	// worker runs it while it runs and drains it when it stops. Nil means
	// such events are not stored again.
	Audit *AuditQueue
	// Follow, when set, starts following a result that asks for it
	// (Result.Follow), after the result is stored and before the job is
	// acknowledged (follow.Start).
	Follow func(ctx context.Context, res *wire.Result) error
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
	// AuditDrainTimeout is how long a soft stop, once the jobs are done,
	// waits for audit events in flight to be confirmed and for Audit to
	// store its queue; events not stored by then are counted as lost. It
	// should exceed JS's asynchronous publish timeout, so that every event
	// in flight is either confirmed or queued in time. Defaults to 15s.
	AuditDrainTimeout time.Duration
	Logger            zerolog.Logger
}

// The defaults of Config, applied by New to zero fields and read by
// service.DefaultConfig, so each is written once.
const (
	// DefaultConcurrency is Config.Concurrency's default: with Graph's
	// latency of a few hundred milliseconds, 32 jobs in flight reach
	// Intune's limit many times over.
	DefaultConcurrency = 32
	// DefaultDrainTimeout is Config.DrainTimeout's default.
	DefaultDrainTimeout = 30 * time.Second
)

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
		cfg.Concurrency = DefaultConcurrency
	}
	if cfg.FetchWait == 0 {
		cfg.FetchWait = time.Second
	}
	if cfg.DrainTimeout == 0 {
		cfg.DrainTimeout = DefaultDrainTimeout
	}
	if cfg.AuditDrainTimeout == 0 {
		cfg.AuditDrainTimeout = 15 * time.Second
	}
	return &Worker{cfg: cfg, log: cfg.Logger, credsBroken: make(chan struct{}, 1)}, nil
}

// Run consumes jobs until ctx is cancelled (a soft stop: no new jobs, jobs
// in flight finish within DrainTimeout, then audit events in flight are
// stored within AuditDrainTimeout) or hard is cancelled (jobs in flight are
// handed back at once, audit events not yet stored are counted as lost).
// It returns nil after a clean stop, once every goroutine it started has
// returned.
func (w *Worker) Run(ctx, hard context.Context) error {
	jobCtx, cancelJobs := context.WithCancel(hard)
	defer cancelJobs()
	auditCtx, stopAudit := context.WithCancel(hard)
	defer stopAudit()
	auditDone := make(chan struct{})
	if w.cfg.Audit != nil {
		go func() {
			defer close(auditDone)
			w.cfg.Audit.run(auditCtx, w.cfg.JS)
		}()
	} else {
		close(auditDone)
	}
	sem := make(chan struct{}, w.cfg.Concurrency)
	refresh := false
	for ctx.Err() == nil {
		if err := w.awaitCredentials(ctx, refresh); err != nil {
			break
		}
		w.consume(ctx, jobCtx, sem)
		refresh = true
	}
	err := w.drain(cancelJobs)
	w.drainAudit(hard, stopAudit, auditDone)
	return err
}

// awaitCredentials blocks until a token can be had, retrying with backoff
// and keeping /readyz and the log honest meanwhile.
func (w *Worker) awaitCredentials(ctx context.Context, refresh bool) error {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = time.Second
	b.MaxInterval = 30 * time.Second
	b.MaxElapsedTime = 0
	probe := func() error {
		err := w.cfg.Probe(ctx, refresh)
		w.cfg.Health.SetCredentials(err)
		if err != nil && ctx.Err() != nil {
			return backoff.Permanent(ctx.Err())
		}
		if err != nil {
			w.cfg.Telemetry.TokenError()
		}
		return err
	}
	notify := func(err error, delay time.Duration) {
		w.log.Error().Err(err).Dur("retry_in", delay).Msg("cannot get a token: not taking jobs until one can be had")
	}
	return backoff.RetryNotify(probe, backoff.WithContext(b, ctx), notify)
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
			w.cfg.Telemetry.TokenError()
			w.cfg.Health.SetCredentials(errors.New("graph refused the token or none could be had"))
			return
		case sem <- struct{}{}:
		}
		if ctx.Err() != nil {
			// The stop and a freed slot came together: the stop wins.
			<-sem
			return
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

// drainAudit lets the audit events in flight be confirmed or queued, then
// lets the queue store them, within AuditDrainTimeout (or until hard is
// cancelled); the queue counts what it could not store as lost.
func (w *Worker) drainAudit(hard context.Context, stopAudit context.CancelFunc, auditDone <-chan struct{}) {
	if w.cfg.Audit == nil {
		return
	}
	timeout := time.NewTimer(w.cfg.AuditDrainTimeout)
	defer timeout.Stop()
	select {
	case <-w.cfg.JS.PublishAsyncComplete():
	case <-timeout.C:
		stopAudit()
	case <-hard.Done():
	}
	if n := w.cfg.JS.PublishAsyncPending(); n > 0 {
		w.log.Warn().Int("events", n).Msg("audit events still await the stream's confirmation; those it does not confirm before the process exits are lost")
	}
	w.cfg.Audit.close()
	select {
	case <-auditDone:
		return
	case <-timeout.C:
		w.log.Warn().Dur("timeout", w.cfg.AuditDrainTimeout).Msg("audit events not stored again by the drain timeout: counting them as lost")
	case <-hard.Done():
	}
	stopAudit()
	<-auditDone
}
