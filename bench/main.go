// Command bench measures the worker against the two ceilings that bound it,
// and the HTTP gateway against direct publishes, in one run on one machine,
// and prints a markdown table of ratios that mean something on any machine:
//
//  1. the raw JetStream ceiling: a bare pull consumer that publishes a
//     result and acks each job, with no worker logic; and the floor: the
//     same consumer doing the I/O the contract requires of each job (the
//     idempotency record created and completed, the Graph call, the result,
//     two audit events, the ack), which says how much of the worker's
//     distance to the ceiling is its own;
//  2. the real worker (idempotency, the shared limiter set to unlimited, the
//     Graph double at zero latency) in 1 and 3 processes, as jobs/s and as a
//     share of (1);
//  3. the latency of a single job at idle, enqueue to result, less the Graph
//     double's own time;
//  4. the rate-limited fleet against a Graph double enforcing the same
//     limit at 300 ms per call: achieved ÷ allowed throughput, and 429s;
//  5. allocations and bytes per job of the job handler (go test -benchmem)
//     and the worker's peak RSS with 10k and 100k jobs queued;
//  6. the HTTP gateway: submissions per second through a gateway process
//     (keep-alive, 64 concurrent clients) as a share of direct JetStream
//     publishes and of the floor (the record and the job written without
//     HTTP), and the latency of a POST with Prefer: wait at idle, less the
//     Graph double's own time.
//  7. what fsyncing every write costs: the worker fleet on one node and on
//     a 3-node R3 cluster with JetStream's sync_interval at its default
//     and at "always" (deploy/nats/cluster.conf's setting), side by side.
//  8. a device's history (history.Reader.Device) among 1,000,000 audit
//     events, as a ratio to a direct get of one event in the same run,
//     with a scan of the stream and a filtered consumer for comparison.
//
// Everything runs on loopback: an embedded nats-server and the Graph and
// Entra ID double live in this process; the workers and the gateway are
// real processes of cmd/worker and cmd/gateway, built by the run,
// configured through the environment, the workers trusting the double's CA
// through SSL_CERT_FILE. Run it from the module root:
//
//	go run ./bench            # the full run, a few minutes on 2 cores
//	go run ./bench --quick    # smaller sizes, under a minute
//	go run ./bench --profile /tmp/prof   # also CPU profiles of each throughput run
//	go run ./bench --rows gateway        # the gateway's rows alone
//	go run ./bench --rows durability     # the fsync comparison alone, about a minute
//	go run ./bench --rows history        # the device-history lookups alone, a few minutes
//
// Progress goes to stderr, the table to stdout.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	switch os.Getenv(roleEnv) {
	case roleRawConsumer:
		os.Exit(rawConsumerMain())
	case rolePlainHTTP:
		os.Exit(plainHTTPMain())
	}
	cfg, err := parseConfig(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// run measures everything cfg asks for and writes the table to out and
// progress to progress.
func run(ctx context.Context, cfg config, out, progress io.Writer) error {
	b, err := newBench(ctx, cfg, progress)
	if err != nil {
		return err
	}
	defer b.close()
	rep, err := b.measure(ctx)
	if err != nil {
		return err
	}
	return rep.write(out)
}
