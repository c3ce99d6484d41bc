// Command worker consumes recoverPasscode jobs from NATS JetStream and calls
// Microsoft Graph for each, with idempotency, a rate limit shared by the
// whole fleet, and backoff. With --dev it also starts an embedded
// nats-server, a Graph and Entra ID double and the HTTP gateway (with a
// development API key it prints), so it runs on a fresh clone, and logs for
// people (the console format) when stderr is a terminal.
// `worker login` signs a service account in for delegated tokens instead of
// app-only ones.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"golang.org/x/term"

	"github.com/recoverpasscode/recoverpasscode/service"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "login" {
		os.Exit(login(os.Args[2:], os.Stdout, os.Stderr))
	}
	cfg, err := parseConfig(os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "worker:", err)
		os.Exit(2)
	}
	cfg.forPeople(term.IsTerminal(int(os.Stderr.Fd())))
	soft, hard := service.SignalContexts()
	if err := run(soft, hard, cfg, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "worker:", err)
		os.Exit(1)
	}
}

// run starts the --dev stack and its gateway if asked, then runs the worker
// until ctx is cancelled and it has drained; hard, when cancelled, hands
// jobs in flight back at once. The gateway serves until the worker has
// stopped, so that a request waiting for its result gets it.
func run(ctx, hard context.Context, cfg *config, out io.Writer) error {
	if cfg.Dev {
		dev, err := service.StartDev(&cfg.Config, cfg.DevDir, out)
		if err != nil {
			return err
		}
		defer dev.Close()
		stop, err := serveDevGateway(cfg, dev, out)
		if err != nil {
			return err
		}
		defer stop()
	}
	return service.Run(ctx, hard, cfg.Config, out)
}
