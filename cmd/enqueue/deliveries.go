package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/recoverpasscode/recoverpasscode/wire"
	"github.com/recoverpasscode/recoverpasscode/writeback"
)

const deliveriesUsage = `enqueue deliveries lists and redelivers write-back deliveries that finally failed: results
(and confirmations of followed jobs) a webhook, a ServiceNow instance or a Jira site did
not take, kept with the reason in the bucket <prefix>_deliveries (for as long as results
are kept, 30 days by default).

Usage:
  enqueue deliveries list      [--source S] [--endpoint E] [--id JOB] [--json]
  enqueue deliveries redeliver (--source S | --endpoint E | --id JOB | --all) [--dry-run]

The NATS user needs to read and write that bucket: in deploy/nats/accounts.conf that is
the user "operator".
`

// deliveriesSelector chooses failed deliveries.
type deliveriesSelector struct {
	source, endpoint, id string
}

func (s *deliveriesSelector) define(fs *flag.FlagSet) {
	fs.StringVar(&s.source, "source", "", "only the deliveries of this source")
	fs.StringVar(&s.endpoint, "endpoint", "", "only the deliveries to this endpoint (its name: webhook-…, servicenow, jira, or the one configured)")
	fs.StringVar(&s.id, "id", "", "only the deliveries of this job id")
}

func (s *deliveriesSelector) filter() writeback.Filter {
	return writeback.Filter{Source: s.source, Endpoint: s.endpoint, JobID: s.id}
}

func (s *deliveriesSelector) check() error {
	for _, f := range []struct{ flag, v string }{{"--source", s.source}, {"--endpoint", s.endpoint}} {
		if f.v != "" && !wire.ValidToken(f.v) {
			return fmt.Errorf("%s %q: want one subject token (letters, digits, '-', '_')", f.flag, f.v)
		}
	}
	if s.id != "" && !wire.ValidID(s.id) {
		return fmt.Errorf("--id %q: a job id is letters, digits, '-' and '_'", s.id)
	}
	return nil
}

func (s *deliveriesSelector) empty() bool { return s.source == "" && s.endpoint == "" && s.id == "" }

func deliveries(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, deliveriesUsage)
		return errors.New("deliveries: want list or redeliver")
	}
	switch args[0] {
	case "list":
		return deliveriesList(ctx, args[1:], stdout, stderr)
	case "redeliver":
		return deliveriesRedeliver(ctx, args[1:], stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, deliveriesUsage)
		return nil
	default:
		fmt.Fprint(stderr, deliveriesUsage)
		return fmt.Errorf("deliveries: unknown subcommand %q: want list or redeliver", args[0])
	}
}

const deliveriesListUsage = `enqueue deliveries list lists the failed deliveries, oldest failure first: the source and
endpoint, the job (JOB/confirmation for a followed job's confirmation) and its ticket, how the delivery ended (rejected: the endpoint kept
refusing it, e.g. a wrong secret or credentials; gone: it answered 410 and is disabled;
exhausted: no 2xx within the retry period; no-ticket, invalid-ticket, not-found,
ambiguous: the ticket names no one record or issue), the last HTTP status, the attempts,
when, and the reason with an excerpt of the last answer. Disabled endpoints are listed
first.

Usage:
  enqueue deliveries list [--source S] [--endpoint E] [--id JOB] [--json]

Exit status: 0 listed (also when none matched), 1 the command failed.

Flags:
`

func deliveriesList(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, s := newFlagSet("enqueue deliveries list", deliveriesListUsage, stderr)
	var conn connFlags
	var sel deliveriesSelector
	var asJSON bool
	conn.define(s)
	sel.define(fs)
	fs.BoolVar(&asJSON, "json", false, "print each failed delivery as a JSON line")
	if err := parse(fs, s, args); err != nil {
		return err
	}
	if err := sel.check(); err != nil {
		return err
	}
	store, closeConn, err := openDeliveries(ctx, &conn, stderr)
	if err != nil {
		return err
	}
	defer closeConn()
	failures, err := store.Failures(ctx, sel.filter())
	if err != nil {
		return err
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		for _, f := range failures {
			if err := enc.Encode(f); err != nil {
				return err
			}
		}
		return nil
	}
	disabled, err := store.Disabled(ctx)
	if err != nil {
		return err
	}
	for _, d := range disabled {
		if (sel.source == "" || sel.source == d.Source) && (sel.endpoint == "" || sel.endpoint == d.Endpoint) {
			fmt.Fprintf(stdout, "endpoint %s/%s is disabled since %s (410 Gone for job %s): redeliver that delivery to enable it again\n",
				d.Source, d.Endpoint, d.At.UTC().Format(time.RFC3339), d.JobID)
		}
	}
	printFailures(stdout, failures)
	return nil
}

func printFailures(w io.Writer, failures []writeback.Failure) {
	if len(failures) == 0 {
		fmt.Fprintln(w, "no failed deliveries match")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "FAILED\tSOURCE\tENDPOINT\tJOB\tTICKET\tOUTCOME\tSTATUS\tATTEMPTS\tREASON")
	for _, f := range failures {
		status := "-"
		if f.Status != 0 {
			status = fmt.Sprint(f.Status)
		}
		outcome := string(f.Outcome)
		if f.Redeliver != nil {
			outcome += " (redelivering)"
		}
		reason := f.Reason
		if f.Body != "" {
			reason += ": " + f.Body
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n", f.FailedAt.UTC().Format(time.RFC3339), f.Source, f.Endpoint, failureJob(f),
			orDash(f.Ticket), outcome, status, f.Attempts, wire.Truncate(reason, 300))
	}
	tw.Flush()
	fmt.Fprintf(w, "%d failed deliver%s\n", len(failures), plural(len(failures), "y", "ies"))
}

// failureJob names what failed: the job (its result), or
// <jobId>/confirmation.
func failureJob(f writeback.Failure) string {
	if f.Confirmation {
		return f.JobID + "/confirmation"
	}
	return f.JobID
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

const deliveriesRedeliverUsage = `enqueue deliveries redeliver asks the deliverer (in the gateway) to deliver the selected
failed deliveries again, each with a fresh round of retries; each stays listed, marked
"redelivering", until it is delivered (then it is gone from the list) or fails again (then
it is listed with the new reason). Redelivering a delivery that disabled its endpoint
(410 Gone) enables the endpoint again first, so the results that waited for it follow.
Fix the cause first: the receiver's secret, the credentials, the missing record.

Usage:
  enqueue deliveries redeliver (--source S | --endpoint E | --id JOB | --all) [--dry-run]

Exit status: 0 every selected delivery is being redelivered (or none matched), 1 the
command failed.

Flags:
`

func deliveriesRedeliver(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, s := newFlagSet("enqueue deliveries redeliver", deliveriesRedeliverUsage, stderr)
	var conn connFlags
	var sel deliveriesSelector
	var all, dryRun bool
	conn.define(s)
	sel.define(fs)
	fs.BoolVar(&all, "all", false, "redeliver every failed delivery (required when no --source, --endpoint or --id is given)")
	fs.BoolVar(&dryRun, "dry-run", false, "say what would be redelivered; change nothing")
	if err := parse(fs, s, args); err != nil {
		return err
	}
	if err := sel.check(); err != nil {
		return err
	}
	if sel.empty() && !all {
		return errors.New("choose what to redeliver: --source S, --endpoint E, --id JOB, or --all")
	}
	store, closeConn, err := openDeliveries(ctx, &conn, stderr)
	if err != nil {
		return err
	}
	defer closeConn()
	failures, err := store.Failures(ctx, sel.filter())
	if err != nil {
		return err
	}
	if len(failures) == 0 {
		fmt.Fprintln(stdout, "no failed deliveries match")
		return nil
	}
	by := conn.nats.User
	if by == "" {
		by = os.Getenv("USER")
	}
	var failed []string
	for _, f := range failures {
		what := fmt.Sprintf("job %s to %s/%s (%s)", failureJob(f), f.Source, f.Endpoint, f.Outcome)
		if dryRun {
			fmt.Fprintf(stdout, "would redeliver %s\n", what)
			continue
		}
		reenabled, err := store.Redeliver(ctx, f, by)
		switch {
		case errors.Is(err, writeback.ErrRedeliveryPending):
			fmt.Fprintf(stdout, "already redelivering %s since %s\n", what, f.Redeliver.RequestedAt.UTC().Format(time.RFC3339))
		case errors.Is(err, jetstream.ErrKeyExists):
			failed = append(failed, what+": it changed since it was read; run the command again")
		case err != nil:
			failed = append(failed, fmt.Sprintf("%s: %v", what, err))
		default:
			if reenabled {
				fmt.Fprintf(stdout, "enabled endpoint %s/%s again\n", f.Source, f.Endpoint)
			}
			fmt.Fprintf(stdout, "redelivering %s\n", what)
		}
	}
	if dryRun {
		fmt.Fprintf(stdout, "dry run: %d deliver%s would be redelivered; nothing was changed\n", len(failures), plural(len(failures), "y", "ies"))
		return nil
	}
	if len(failed) > 0 {
		return fmt.Errorf("could not redeliver %d of %d:\n  %s", len(failed), len(failures), strings.Join(failed, "\n  "))
	}
	fmt.Fprintln(stdout, "follow them with: enqueue deliveries list")
	return nil
}

// openDeliveries connects and opens the deliveries bucket.
func openDeliveries(ctx context.Context, conn *connFlags, stderr io.Writer) (*writeback.Store, func(), error) {
	nc, js, err := conn.connect(stderr)
	if err != nil {
		return nil, nil, err
	}
	store, err := writeback.OpenStore(ctx, js, conn.names())
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return store, nc.Close, nil
}
