// Command worker consumes recoverPasscode jobs from NATS JetStream and calls
// Microsoft Graph for each, with idempotency, a rate limit shared by the
// whole fleet, and backoff. With --dev it also starts an embedded
// nats-server and a Graph and Entra ID double, so it runs on a fresh clone.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/recoverpasscode/recoverpasscode/graph"
	"github.com/recoverpasscode/recoverpasscode/idempotency"
	"github.com/recoverpasscode/recoverpasscode/job"
	"github.com/recoverpasscode/recoverpasscode/queue"
	"github.com/recoverpasscode/recoverpasscode/ratelimit"
	"github.com/recoverpasscode/recoverpasscode/worker"
)

func main() {
	cfg, err := parseConfig(os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "worker:", err)
		os.Exit(2)
	}
	soft, hard := signalContexts()
	if err := run(soft, hard, cfg, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "worker:", err)
		os.Exit(1)
	}
}

// signalContexts returns a context cancelled by the first SIGINT or
// SIGTERM (drain) and one cancelled by the second (stop now).
func signalContexts() (soft, hard context.Context) {
	soft, cancelSoft := context.WithCancel(context.Background())
	hard, cancelHard := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-sigs
		cancelSoft()
		<-sigs
		cancelHard()
	}()
	return soft, hard
}

// run wires the worker and blocks until ctx is cancelled and the worker has
// drained. hard, when cancelled, hands jobs in flight back at once.
func run(ctx, hard context.Context, cfg *config, out io.Writer) error {
	log := newLogger(cfg, out)
	if cfg.Dev {
		dev, err := startDev(cfg, out, log)
		if err != nil {
			return err
		}
		defer dev.Close()
		cfg.httpClient = dev.graph.Client()
	}
	cred, client, err := newGraph(cfg)
	if err != nil {
		return err
	}
	nc, err := cfg.NATS.Connect("recoverpasscode worker "+cfg.Name, log)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	health := worker.NewHealth(nc)
	stopHTTP, err := serveHTTP(cfg.HTTPAddr, health.Handler(), log)
	if err != nil {
		return err
	}
	defer stopHTTP()

	names := queue.Names{Prefix: cfg.Prefix}
	cons, err := setUp(ctx, js, cfg, names, log)
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
	limiter, err := ratelimit.New(ctx, kvLimits, ratelimit.Config{App: cfg.Credential.ClientID, Rate: cfg.Rate, Owner: cfg.Name, Logger: log})
	if err != nil {
		return err
	}
	defer limiter.Close()

	tenants := cfg.Tenants
	handler := &job.Handler{
		Graph:   client,
		Tokens:  cred,
		Limiter: limiter,
		Ledger:  idempotency.New(kvKeys, idempotency.Config{Owner: cfg.Name, Lease: cfg.Lease, Logger: log}),
		Policy:  job.Policy{DefaultTenant: cfg.Credential.TenantID, Tenants: tenants},
		Worker:  cfg.Name,
		Backoff: job.Backoff{MaxAttempts: cfg.MaxAttempts},
		Logger:  log,
	}
	handler.Init()
	w, err := worker.New(worker.Config{
		NC: nc, JS: js, Consumer: cons, Names: names,
		Handler: handler, Health: health,
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
	log.Info().Str("worker", cfg.Name).Str("rate_limit", cfg.Rate.String()).Str("graph", cfg.GraphURL).Msg("worker started")
	err = w.Run(ctx, hard)
	log.Info().Msg("worker stopped")
	if derr := nc.Drain(); derr != nil && !errors.Is(derr, nats.ErrConnectionClosed) {
		log.Warn().Err(derr).Msg("draining the NATS connection")
	}
	return err
}

func newGraph(cfg *config) (*graph.Credential, *graph.Client, error) {
	httpClient := cfg.httpClient
	credCfg := cfg.Credential
	credCfg.HTTPClient = httpClient
	cred, err := graph.NewCredential(credCfg)
	if err != nil {
		return nil, nil, err
	}
	client, err := graph.New(graph.Config{BaseURL: cfg.GraphURL, HTTPClient: httpClient, Credential: cred, AttemptTimeout: cfg.AttemptTimeout})
	if err != nil {
		return nil, nil, err
	}
	return cred, client, nil
}

// setUp creates or updates streams, consumer and buckets, retrying while
// NATS is unreachable so a worker may start before its servers.
func setUp(ctx context.Context, js jetstream.JetStream, cfg *config, names queue.Names, log zerolog.Logger) (jetstream.Consumer, error) {
	setup := queue.Setup{Names: names, Replicas: cfg.Replicas}
	buckets := []jetstream.KeyValueConfig{
		idempotency.BucketConfig(names.KeysBucket(), cfg.KeysTTL, cfg.Replicas),
		ratelimit.BucketConfig(names.LimitsBucket(), cfg.Replicas),
	}
	b := backoff.NewExponentialBackOff()
	b.MaxInterval = 10 * time.Second
	b.MaxElapsedTime = 0
	for {
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		cons, err := setup.Ensure(sctx, js, buckets...)
		cancel()
		if err == nil {
			return cons, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		delay := b.NextBackOff()
		log.Warn().Err(err).Dur("retry_in", delay).Msg("cannot set up JetStream yet")
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(delay):
		}
	}
}

// serveHTTP serves health (and later metrics) on addr until stopped.
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
	log.Info().Str("addr", ln.Addr().String()).Msg("serving /healthz and /readyz")
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}, nil
}

func newLogger(cfg *config, out io.Writer) zerolog.Logger {
	var w io.Writer = out
	if cfg.LogFormat == "console" {
		w = zerolog.ConsoleWriter{Out: out, TimeFormat: time.TimeOnly}
	}
	level, err := zerolog.ParseLevel(cfg.LogLevel)
	if err != nil || cfg.LogLevel == "" {
		level = zerolog.InfoLevel
	}
	return zerolog.New(w).Level(level).With().Timestamp().Str("worker", cfg.Name).Logger()
}
