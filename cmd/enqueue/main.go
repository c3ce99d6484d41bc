// Command enqueue submits recoverPasscode jobs to NATS JetStream and, with
// --wait, prints their results.
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

// Exit codes.
const (
	exitOK        = 0 // every job succeeded (or was submitted, without --wait)
	exitFailed    = 1 // the command itself failed
	exitNotSucces = 2 // a job ended other than succeeded
)

// errNotSucceeded marks a run whose jobs did not all succeed.
var errNotSucceeded = errors.New("not every job succeeded")

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// run executes the command and returns its exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	err := submit(ctx, args, stdout, stderr)
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.Is(err, errNotSucceeded):
		return exitNotSucces
	default:
		fmt.Fprintln(stderr, "enqueue:", err)
		return exitFailed
	}
}
