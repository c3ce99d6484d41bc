// Command enqueue submits recoverPasscode jobs to NATS JetStream: one job
// from flags, or a batch from a CSV or JSON Lines file. It follows their
// results, shows a batch's results later, inspects and replays dead
// letters, lists and redelivers failed write-back deliveries, and lists and
// releases jobs held by their source's budget.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"github.com/recoverpasscode/recoverpasscode/batch"
)

// Exit codes.
const (
	exitOK           = 0   // every job succeeded (or was submitted, without --wait)
	exitFailed       = 1   // the command itself failed
	exitNotSucceeded = 2   // a job ended other than succeeded
	exitInterrupted  = 130 // stopped by a signal; the submitted jobs go on
)

var (
	// errNotSucceeded marks a run whose jobs did not all succeed.
	errNotSucceeded = errors.New("not every job succeeded")
	// errInterrupted marks a run stopped by a signal; what to do next has
	// been printed.
	errInterrupted = errors.New("interrupted")
	// errReported marks a failure whose explanation has been printed.
	errReported = errors.New("reported")
)

const mainUsage = `enqueue submits recoverPasscode jobs and reports their results.

Usage:
  enqueue --device GUID [flags]          submit one job (enqueue --help)
  enqueue --file devices.csv [flags]     submit a batch from a file (enqueue --help)
  enqueue results --batch NAME [flags]   show a batch's results (enqueue results --help)
  enqueue dlq list [flags]               list dead-lettered jobs (enqueue dlq list --help)
  enqueue dlq replay [flags]             submit dead-lettered jobs again (enqueue dlq replay --help)
  enqueue held list|release [flags]      jobs held by their source's budget (enqueue held --help)
  enqueue deliveries list [flags]        list failed write-back deliveries (enqueue deliveries --help)
  enqueue deliveries redeliver [flags]   deliver failed write-back deliveries again

`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// run executes the command and returns its exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	// NATS reports connection changes on its own goroutines, to stderr too.
	errOut := &lockedWriter{w: stderr}
	defer errOut.close()
	return exitCode(dispatch(ctx, args, stdout, errOut), errOut)
}

// lockedWriter serializes writes, and drops those that come after close
// (a NATS callback after the command ended).
type lockedWriter struct {
	mu     sync.Mutex
	w      io.Writer
	closed bool
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return len(p), nil
	}
	return l.w.Write(p)
}

// terminal reports whether the writer is an interactive terminal.
func (l *lockedWriter) terminal() bool {
	f, ok := l.w.(*os.File)
	return ok && batch.IsTerminal(f)
}

func (l *lockedWriter) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
}

func dispatch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, mainUsage)
		return errors.New("nothing to do: give --device or --file, or a subcommand")
	}
	switch args[0] {
	case "results":
		return results(ctx, args[1:], stdout, stderr)
	case "dlq":
		return dlqCommand(ctx, args[1:], stdout, stderr)
	case "held":
		return held(ctx, args[1:], stdout, stderr)
	case "deliveries":
		return deliveries(ctx, args[1:], stdout, stderr)
	case "help":
		fmt.Fprint(stdout, mainUsage)
		return nil
	default:
		return submit(ctx, args, stdout, stderr)
	}
}

func exitCode(err error, stderr io.Writer) int {
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.Is(err, errNotSucceeded):
		return exitNotSucceeded
	case errors.Is(err, errInterrupted):
		return exitInterrupted
	case errors.Is(err, errReported):
		return exitFailed
	default:
		fmt.Fprintln(stderr, "enqueue:", err)
		return exitFailed
	}
}
