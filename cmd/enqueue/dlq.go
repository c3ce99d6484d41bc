package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/recoverpasscode/recoverpasscode/batch"
	"github.com/recoverpasscode/recoverpasscode/dlq"
	"github.com/recoverpasscode/recoverpasscode/wire"
)

const dlqUsage = `enqueue dlq inspects and re-submits dead-lettered jobs: jobs that were rejected or
failed, copied with the reason and the original message to <prefix>.dlq.<source>
(stream <PREFIX>_DLQ).

Usage:
  enqueue dlq list   [--source S] [--batch NAME] [--id ID] [--json]
  enqueue dlq replay (--source S | --batch NAME | --id ID | --all) [--new-key]
                     [--include-rejected] [--dry-run]

The NATS user needs to read the DLQ stream (and, to replay, to publish jobs for the
sources replayed): in deploy/nats/accounts.conf that is the user "operator"; the
per-source users may not.
`

// selector chooses dead letters from the flags.
type selector struct {
	source, batch, id string
}

func (s *selector) define(fs *flag.FlagSet) {
	fs.StringVar(&s.source, "source", "", "only the dead letters of this source")
	fs.StringVar(&s.batch, "batch", "", "only the dead letters of this batch (idempotency key batch/NAME/...)")
	fs.StringVar(&s.id, "id", "", "only the dead letters of this job id")
}

func (s *selector) sel() dlq.Selector {
	return dlq.Selector{Source: s.source, Batch: s.batch, ID: s.id}
}

func (s *selector) check() error {
	if s.source != "" && !wire.ValidToken(s.source) {
		return fmt.Errorf("--source %q: want one subject token (letters, digits, '-', '_')", s.source)
	}
	if s.batch != "" && !batch.ValidName(s.batch) {
		return fmt.Errorf("--batch %q: use 1 to 64 letters, digits, '-' or '_'", s.batch)
	}
	return nil
}

func (s *selector) empty() bool { return s.sel().Empty() }

func dlqCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, dlqUsage)
		return errors.New("dlq: want list or replay")
	}
	switch args[0] {
	case "list":
		return dlqList(ctx, args[1:], stdout, stderr)
	case "replay":
		return dlqReplay(ctx, args[1:], stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, dlqUsage)
		return nil
	default:
		fmt.Fprint(stderr, dlqUsage)
		return fmt.Errorf("dlq: unknown subcommand %q: want list or replay", args[0])
	}
}

const dlqListUsage = `enqueue dlq list lists dead-lettered jobs, oldest first: the DLQ sequence (which
dlq replay uses in the replay's job id), when, the source, the job id, the device, its
status, Graph's HTTP status and error code, and the reason.

Usage:
  enqueue dlq list [--source S] [--batch NAME] [--id ID] [--json]

Exit status: 0 listed (also when none matched), 1 the command failed.

Flags:
`

func dlqList(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, s := newFlagSet("enqueue dlq list", dlqListUsage, stderr)
	var conn connFlags
	var sel selector
	var asJSON bool
	conn.define(s)
	sel.define(fs)
	fs.BoolVar(&asJSON, "json", false, "print each dead letter as a JSON line (with dlqSequence)")
	if err := parse(fs, s, args); err != nil {
		return err
	}
	if err := sel.check(); err != nil {
		return err
	}
	nc, js, err := conn.connect(stderr)
	if err != nil {
		return err
	}
	defer nc.Close()
	letters, err := readDeadLetters(ctx, js, conn.names(), &sel)
	if err != nil {
		return err
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		for _, d := range letters {
			if err := enc.Encode(d); err != nil {
				return err
			}
		}
		return nil
	}
	printDeadLetters(stdout, letters)
	return nil
}

func printDeadLetters(w io.Writer, letters []dlq.Letter) {
	if len(letters) == 0 {
		fmt.Fprintln(w, "no dead letters match")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SEQ\tAT\tSOURCE\tJOB\tDEVICE\tSTATUS\tGRAPH\tCODE\tREASON")
	for _, d := range letters {
		device, status, graphStatus, code, reason := "-", "-", "-", "-", d.Reason
		if r := d.Result; r != nil {
			device, status, reason = orDash(r.ManagedDeviceID), string(r.Status), batch.Message(*r)
			if r.Graph != nil {
				graphStatus, code = fmt.Sprint(r.Graph.Status), orDash(r.Graph.ErrorCode)
			}
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", d.Seq, d.At.UTC().Format(time.RFC3339), d.Source, d.JobID, device, status, graphStatus, code, reason)
	}
	tw.Flush()
	fmt.Fprintf(w, "%d dead letter(s)\n", len(letters))
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// readDeadLetters reads the dead letters stored now that the selector
// matches, oldest first.
func readDeadLetters(ctx context.Context, js jetstream.JetStream, names wire.Names, sel *selector) ([]dlq.Letter, error) {
	return dlq.Read(ctx, js, names, sel.sel())
}
