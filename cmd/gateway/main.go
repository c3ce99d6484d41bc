// Command gateway serves recoverpasscode's HTTP door: ticketing systems and
// automation submit recoverPasscode jobs and follow them over HTTP, with an
// API key or an Entra ID access token naming their source; the gateway
// publishes them to the workers' NATS JetStream queue and reads their
// results, and it delivers every result of a source back to the source's
// webhooks, ServiceNow records and Jira issues (package writeback; every
// replica shares the durable consumers). It links neither MSAL nor the
// engine and holds no Graph credential. `gateway hash-key` makes an API
// key and its hash.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/rs/zerolog"

	"github.com/recoverpasscode/recoverpasscode/gateway"
	"github.com/recoverpasscode/recoverpasscode/queue"
	"github.com/recoverpasscode/recoverpasscode/wire"
	"github.com/recoverpasscode/recoverpasscode/writeback"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "hash-key" {
		os.Exit(hashKey(os.Args[2:], os.Stdin, os.Stdout, os.Stderr))
	}
	cfg, err := parseConfig(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "gateway:", err)
		os.Exit(2)
	}
	soft, hard := signalContexts(cfg.DrainTimeout)
	if err := run(soft, hard, cfg, os.Stderr, nil); err != nil {
		fmt.Fprintln(os.Stderr, "gateway:", err)
		os.Exit(1)
	}
}

// signalContexts returns soft, cancelled by the first SIGINT or SIGTERM,
// and hard, cancelled by a second one or drain after the first.
func signalContexts(drain time.Duration) (soft, hard context.Context) {
	soft, cancelSoft := context.WithCancel(context.Background())
	hard, cancelHard := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-sigs
		cancelSoft()
		select {
		case <-sigs:
		case <-time.After(drain):
		}
		cancelHard()
	}()
	return soft, hard
}

// run connects to NATS and serves the gateway until ctx ends, then lets
// requests in flight finish until hard ends. ready, when not nil, gets the
// address once it listens.
func run(ctx, hard context.Context, cfg *config, out io.Writer, ready func(addr string)) error {
	log := newLogger(cfg.LogFormat, cfg.LogLevel, out)
	opts, err := cfg.NATS.Options("recoverpasscode-gateway", log)
	if err != nil {
		return err
	}
	// Nothing is buffered while disconnected: a job the caller was told
	// 503 about must not be sent later.
	opts = append(opts, nats.ReconnectBufSize(-1))
	nc, err := nats.Connect(strings.TrimSpace(cfg.NATS.URL), opts...)
	if err != nil {
		return fmt.Errorf("connect to NATS at %s: %w", queue.RedactURLs(cfg.NATS.URL), err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	g := cfg.Gateway
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	g.NATS, g.Log, g.Registry = nc, &log, reg
	wb, err := writeback.New(js, writeBackConfig(g, reg, log))
	if err != nil {
		return err
	}
	g.Ready = func() error { return writeBackReady(wb) }
	con, err := cfg.Console.newConsole(g, js, &log)
	if err != nil {
		return err
	}
	if con != nil {
		g.Console = con
		log.Info().Str("redirect_uri", con.RedirectURI()).Bool("readonly", cfg.Console.ReadOnly).Msg("console enabled")
	}
	gw, err := gateway.New(g)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("GATEWAY_HTTP_ADDR: %w", err)
	}
	names := make([]string, 0, len(g.Sources))
	for _, s := range g.Sources {
		names = append(names, s.Name)
	}
	log.Info().Str("nats", queue.RedactURLs(cfg.NATS.URL)).Strs("sources", names).Int("writeback_endpoints", len(wb.Endpoints())).Msg("gateway starting")
	if ready != nil {
		ready(ln.Addr().String())
	}
	// Write-back runs until the process stops; should it fail, the
	// gateway stops with its error rather than serve without it.
	serveCtx, stopServing := context.WithCancel(ctx)
	defer stopServing()
	wbDone := make(chan error, 1)
	go func() {
		err := wb.Run(serveCtx)
		if err != nil {
			stopServing()
		}
		wbDone <- err
	}()
	err = gw.Serve(serveCtx, hard, ln)
	stopServing()
	// Run hands every delivery in flight back to JetStream before it
	// returns: the connection is drained after.
	if wbErr := <-wbDone; wbErr != nil {
		err = errors.Join(fmt.Errorf("write-back: %w", wbErr), err)
	}
	_ = nc.Drain()
	return err
}

// writeBackConfig is the write-back of g's sources.
func writeBackConfig(g gateway.Config, reg prometheus.Registerer, log zerolog.Logger) writeback.Config {
	return writeback.Config{
		Names:      wire.Names{Prefix: g.Prefix},
		Sources:    gateway.WriteBacks(g.Sources),
		Registerer: reg,
		Logger:     log,
	}
}

// writeBackReady reports whether write-back has set up its consumers.
func writeBackReady(wb *writeback.Deliverer) error {
	select {
	case <-wb.Started():
		return nil
	default:
		return errors.New("write-back: the delivery consumers are not set up yet (the workers create the deliveries bucket with their streams)")
	}
}

// newLogger returns a zerolog logger writing JSON, or a console format for
// people, at the given level (info when unknown).
func newLogger(format, level string, out io.Writer) zerolog.Logger {
	w := out
	if format == "console" {
		w = zerolog.ConsoleWriter{Out: out, TimeFormat: time.TimeOnly}
	}
	lvl, err := zerolog.ParseLevel(level)
	if err != nil || level == "" {
		lvl = zerolog.InfoLevel
	}
	return zerolog.New(w).Level(lvl).With().Timestamp().Logger()
}
