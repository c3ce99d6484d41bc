package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/recoverpasscode/recoverpasscode/queue"
	"github.com/recoverpasscode/recoverpasscode/wire"
)

// roleEnv names the role a child process of the run plays; the raw
// consumer is this program started again with roleEnv=roleRawConsumer, and
// it does the floor's work instead when consumerEnv=consumerFloor.
const (
	roleEnv         = "BENCH_ROLE"
	roleRawConsumer = "raw-consumer"
	consumerEnv     = "BENCH_CONSUMER"
	consumerFloor   = "floor"
)

// rawConsumerMain is the raw JetStream ceiling: it consumes jobs from the
// workers' consumer and, for each, stores a result of the real size through
// JetStream (deduplicated by job, as the worker does) and acks with
// confirmation — the worker's JetStream work with no worker logic, as many
// jobs in flight as a worker. It reads NATS_URL, RECOVER_CONCURRENCY and
// RECOVER_HTTP_ADDR, answers /readyz once consuming, and stops on SIGTERM.
func rawConsumerMain() int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := consumeRaw(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "raw consumer:", err)
		return 1
	}
	return 0
}

func consumeRaw(ctx context.Context) error {
	conc, err := strconv.Atoi(os.Getenv("RECOVER_CONCURRENCY"))
	if err != nil || conc < 1 {
		return fmt.Errorf("RECOVER_CONCURRENCY %q: want a positive number", os.Getenv("RECOVER_CONCURRENCY"))
	}
	nc, err := nats.Connect(os.Getenv("NATS_URL"), nats.Name("recoverpasscode bench raw consumer"))
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	names := wire.Names{}
	answer := func(msg jetstream.Msg) error { return answerRaw(js, names, msg) }
	if os.Getenv(consumerEnv) == consumerFloor {
		f, err := newFloor(ctx, js, names)
		if err != nil {
			return err
		}
		answer = f.answer
	}
	cons, err := js.Consumer(ctx, names.JobsStream(), queue.ConsumerName)
	if err != nil {
		return fmt.Errorf("jobs consumer: %w", err)
	}
	msgs, err := cons.Messages(jetstream.PullMaxMessages(conc))
	if err != nil {
		return err
	}
	stopHTTP, err := serveReady(os.Getenv("RECOVER_HTTP_ADDR"))
	if err != nil {
		return err
	}
	defer stopHTTP()
	go func() { <-ctx.Done(); msgs.Stop() }()

	var wg sync.WaitGroup
	defer wg.Wait()
	sem := make(chan struct{}, conc)
	for {
		msg, err := msgs.Next()
		if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
			return nil
		}
		if err != nil {
			return err
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := answer(msg); err != nil {
				fmt.Fprintf(os.Stderr, "{\"level\":\"error\",\"message\":%q}\n", err.Error())
			}
		}()
	}
}

// answerRaw stores a result for msg and acks it.
func answerRaw(js jetstream.JetStream, names wire.Names, msg jetstream.Msg) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	id := msg.Headers().Get(jetstream.MsgIDHeader)
	data, err := json.Marshal(rawResult(id))
	if err != nil {
		return err
	}
	m := nats.NewMsg(names.Result(source, id))
	m.Data = data
	m.Header.Set(jetstream.MsgIDHeader, id+"/result")
	if _, err := js.PublishMsg(ctx, m); err != nil {
		return fmt.Errorf("store result: %w", err)
	}
	return msg.DoubleAck(ctx)
}

// rawResult is a result of the size the worker publishes.
func rawResult(id string) wire.Result {
	now := time.Now()
	return wire.Result{
		JobID: id, IdempotencyKey: id, Source: source,
		TenantID: benchTenant, ManagedDeviceID: deviceID(0),
		RequestedBy: "helpdesk-agent@contoso.com", Ticket: "INC0000000",
		Status: wire.Succeeded, Attempts: 1,
		Graph: &wire.GraphOutcome{
			Status:          http.StatusNoContent,
			RequestID:       "9edd2bfa-6f0e-4c4e-9d5b-1b7c2d3e4f50",
			ClientRequestID: "7d194212-5e8f-42e7-8044-67c3efd91986",
		},
		QueuedAt: now, StartedAt: now, FinishedAt: now, Worker: "bench-raw",
	}
}

// serveReady answers 200 on /readyz at addr until stopped, and serves the
// CPU profiler when RECOVER_PPROF is true.
func serveReady(addr string) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("RECOVER_HTTP_ADDR: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /readyz", func(http.ResponseWriter, *http.Request) {})
	if os.Getenv("RECOVER_PPROF") == "true" {
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	}
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: time.Second,
	}
	go func() { _ = srv.Serve(ln) }()
	return func() { _ = srv.Close() }, nil
}
