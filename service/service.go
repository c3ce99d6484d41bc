package service

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"golang.org/x/term"

	"github.com/recoverpasscode/recoverpasscode/clock"
	"github.com/recoverpasscode/recoverpasscode/graph"
	"github.com/recoverpasscode/recoverpasscode/idempotency"
	"github.com/recoverpasscode/recoverpasscode/job"
	"github.com/recoverpasscode/recoverpasscode/metrics"
	"github.com/recoverpasscode/recoverpasscode/queue"
	"github.com/recoverpasscode/recoverpasscode/quota"
	"github.com/recoverpasscode/recoverpasscode/ratelimit"
	"github.com/recoverpasscode/recoverpasscode/wire"
	"github.com/recoverpasscode/recoverpasscode/worker"
)

// auditAckTimeout is how long an audit event's publication may go without
// the stream's confirmation before it is stored again.
const auditAckTimeout = 10 * time.Second

// Run runs a worker until ctx is cancelled and the worker has drained (a
// soft stop), or hard is cancelled (jobs in flight are handed back at
// once). Logs go to logOut. It returns nil after a clean stop.
func Run(ctx, hard context.Context, cfg Config, logOut io.Writer) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	log := NewLogger(cfg.LogFormat, cfg.LogLevel, logOut).With().Str("worker", cfg.Name).Logger()
	cred, client, err := newGraph(&cfg, log)
	if err != nil {
		return err
	}
	nc, err := cfg.NATS.Connect("recoverpasscode worker "+cfg.Name, log)
	if err != nil {
		return err
	}
	defer nc.Close()
	reg := prometheus.NewRegistry()
	m := metrics.New(reg)
	// Audit events are published asynchronously: bound what may be in
	// flight, and hand every one the stream did not confirm (a timeout, a
	// lost connection) to the audit queue, which the worker runs to store
	// them again.
	audit := worker.NewAuditQueue(m, log)
	js, err := jetstream.New(nc,
		jetstream.WithPublishAsyncMaxPending(4096),
		jetstream.WithPublishAsyncTimeout(auditAckTimeout),
		jetstream.WithPublishAsyncErrHandler(audit.NotStored))
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	health := worker.NewHealth(nc)
	stopHTTP, err := serveHTTP(cfg.HTTPAddr, httpHandler(health, reg, m, cfg.Pprof), log)
	if err != nil {
		return err
	}
	defer stopHTTP()

	names := wire.Names{Prefix: cfg.Prefix}
	cons, err := setUp(ctx, js, &cfg, names, log)
	if err != nil {
		return err
	}
	health.MarkStarted()
	kvKeys, err := js.KeyValue(ctx, names.KeysBucket())
	if err != nil {
		return fmt.Errorf("bucket %s: %w", names.KeysBucket(), err)
	}
	kvLimits, err := js.KeyValue(ctx, names.LimitsBucket())
	if err != nil {
		return fmt.Errorf("bucket %s: %w", names.LimitsBucket(), err)
	}
	// One clock, corrected to the server's, for every time the fleet shares.
	clk, err := clock.New(clock.Config{KV: kvLimits, Key: clock.Key(cfg.Name), Local: cfg.Clock})
	if err != nil {
		return err
	}
	limiterCfg := ratelimit.Config{
		App: cfg.Credential.ClientID, Rate: cfg.Rate, Burst: cfg.burst(), Owner: cfg.Name,
		Clock: clk, OnBudget: m.LearnedRate, Logger: log,
	}
	limiter, err := ratelimit.New(ctx, kvLimits, limiterCfg)
	if err != nil {
		return err
	}
	defer limiter.Close()

	budgets := quota.New(js, kvLimits, cfg.SourceLimits).WithClock(clk)
	if err := budgets.Announce(ctx); err != nil {
		log.Warn().Err(err).Msg("could not write the source budgets into the limits bucket: the gateway judges them by the rates last written until a job is admitted under each")
	}
	m.OnScrape(sampleHeld(budgets, m))
	telemetry := worker.NewTelemetry(js, names, m, log)
	m.OnScrape(telemetry.SampleConsumer(cons))
	followTelemetry := worker.NewFollowTelemetry(telemetry, metrics.NewFollow(reg))
	m.OnScrape(followTelemetry.SampleFollows(js, names))
	fl, err := newFollower(ctx, js, kvLimits, &cfg, names, client, cred, followTelemetry, limiterCfg, log)
	if err != nil {
		return err
	}
	handler, err := job.New(job.Config{
		Observer:      telemetry,
		Graph:         client,
		Tokens:        cred,
		Limiter:       limiter,
		Devices:       client,
		Reads:         fl.reads,
		FollowSources: cfg.Follow.sourceSet(),
		Quota:         budgets,
		Ledger:        idempotency.New(kvKeys, idempotency.Config{Owner: cfg.Name, Lease: cfg.Lease, Clock: clk, Logger: log}),
		Policy:        wire.Policy{DefaultTenant: cfg.Credential.TenantID, Tenants: cfg.Tenants, Names: names, InboxPerSource: cfg.InboxPerSource},
		Worker:        cfg.Name,
		Backoff:       job.Backoff{MaxAttempts: cfg.MaxAttempts},
		// Renew well inside both deadlines so neither lapses while a job waits.
		KeepAliveEvery: min(cfg.AckWait, cfg.Lease) / 3,
		Logger:         log,
	})
	if err != nil {
		return err
	}
	w, err := worker.New(worker.Config{
		NC: nc, JS: js, Consumer: cons, Names: names,
		Handler: handler, Health: health, Telemetry: telemetry, Audit: audit,
		Follow: startFollow(js, names, cfg.Follow.Schedule),
		Probe: func(ctx context.Context, refresh bool) error {
			var err error
			if refresh {
				_, err = cred.Refresh(ctx, cfg.Credential.TenantID)
			} else {
				_, err = cred.Token(ctx, cfg.Credential.TenantID)
			}
			return err
		},
		Concurrency:  cfg.Concurrency,
		DrainTimeout: cfg.DrainTimeout,
		Logger:       log,
	})
	if err != nil {
		return err
	}
	log.Info().Str("rate_limit", cfg.Rate.String()).Str("graph", cfg.GraphURL).Int("concurrency", cfg.Concurrency).Msg("worker started")
	fl.start(ctx)
	err = w.Run(ctx, hard)
	fl.stop()
	log.Info().Msg("worker stopped")
	if derr := nc.Drain(); derr != nil && !errors.Is(derr, nats.ErrConnectionClosed) {
		log.Warn().Err(derr).Msg("draining the NATS connection")
	}
	return err
}

// newGraph builds the token source cfg selects, app-only or delegated, and
// the Graph client using it.
func newGraph(cfg *Config, log zerolog.Logger) (graph.TokenSource, *graph.Client, error) {
	credCfg := cfg.Credential
	credCfg.HTTPClient = cfg.HTTPClient
	var cred graph.TokenSource
	if credCfg.Delegated() {
		d, err := graph.NewDelegated(credCfg, log)
		if err != nil {
			return nil, nil, err
		}
		log.Info().Str("token_cache", credCfg.TokenCache).Msg("delegated tokens: acting as the account `worker login` signed in")
		cred = d
	} else {
		c, err := graph.NewCredential(credCfg)
		if err != nil {
			return nil, nil, err
		}
		cred = c
	}
	client, err := graph.New(graph.Config{BaseURL: cfg.GraphURL, HTTPClient: cfg.HTTPClient, Credential: cred, AttemptTimeout: cfg.AttemptTimeout})
	if err != nil {
		return nil, nil, err
	}
	return cred, client, nil
}

// setUp creates or updates streams, consumer and buckets, retrying while
// NATS is unreachable so a worker may start before its servers.
func setUp(ctx context.Context, js jetstream.JetStream, cfg *Config, names wire.Names, log zerolog.Logger) (jetstream.Consumer, error) {
	setup := queue.Setup{Names: names, Replicas: cfg.Replicas, AckWait: cfg.AckWait, RequestsTTL: cfg.KeysTTL}
	buckets := []jetstream.KeyValueConfig{
		idempotency.BucketConfig(names.KeysBucket(), cfg.KeysTTL, cfg.Replicas),
		ratelimit.BucketConfig(names.LimitsBucket(), cfg.Replicas),
	}
	b := backoff.NewExponentialBackOff()
	b.MaxInterval = 10 * time.Second
	b.MaxElapsedTime = 0
	ensure := func() (jetstream.Consumer, error) {
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		return setup.Ensure(sctx, js, buckets...)
	}
	cons, err := backoff.RetryNotifyWithData(ensure, backoff.WithContext(b, ctx), func(err error, delay time.Duration) {
		log.Warn().Err(err).Dur("retry_in", delay).Msg("cannot set up JetStream yet")
	})
	if err != nil {
		return nil, err
	}
	return cons, nil
}

// sampleHeld counts, at each scrape, the jobs every source with a budget
// (and any other still holding some) has held.
func sampleHeld(budgets *quota.Store, m *metrics.Metrics) func(context.Context) {
	return func(ctx context.Context) {
		counts, err := budgets.Counts(ctx)
		if err != nil {
			return
		}
		for _, source := range budgets.Limits().Limited() {
			if _, ok := counts[source]; !ok {
				counts[source] = 0
			}
		}
		for source, n := range counts {
			m.Held(source, n)
		}
	}
}

// httpHandler serves health and metrics, and the profiler if asked;
// readiness is sampled into the recoverpasscode_ready gauge at each scrape.
func httpHandler(health *worker.Health, reg *prometheus.Registry, m *metrics.Metrics, profile bool) http.Handler {
	m.OnScrape(func(context.Context) { m.Ready(len(health.Problems()) == 0) })
	mux := http.NewServeMux()
	mux.Handle("/", health.Handler())
	mux.Handle("GET /metrics", m.Handler(reg))
	if profile {
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	return mux
}

// serveHTTP serves h on addr until stopped.
func serveHTTP(addr string, h http.Handler, log zerolog.Logger) (stop func(), err error) {
	if addr == "" {
		return func() {}, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("RECOVER_HTTP_ADDR: %w", err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error().Err(err).Msg("http server stopped")
		}
	}()
	log.Info().Str("addr", ln.Addr().String()).Msg("serving /healthz, /readyz and /metrics")
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}, nil
}

// NewLogger returns a zerolog logger writing JSON, or a console format for
// people (in colour when out is a terminal), at the given level (info when
// unknown).
func NewLogger(format, level string, out io.Writer) zerolog.Logger {
	w := out
	if format == "console" {
		w = zerolog.ConsoleWriter{Out: out, TimeFormat: time.TimeOnly, NoColor: !isTerminal(out)}
	}
	lvl, err := zerolog.ParseLevel(level)
	if err != nil || level == "" {
		lvl = zerolog.InfoLevel
	}
	return zerolog.New(w).Level(lvl).With().Timestamp().Logger()
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}
