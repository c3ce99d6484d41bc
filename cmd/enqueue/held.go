package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/recoverpasscode/recoverpasscode/quota"
	"github.com/recoverpasscode/recoverpasscode/wire"
)

const heldUsage = `enqueue held lists and releases jobs held because their source is over its budget
(the worker's RECOVER_SOURCE_LIMITS, e.g. automation=100/1h): such a job is neither
failed nor sent to Graph; it waits in the queue until the budget allows it, or until
it is released here, which lets it go on at its next delivery (within about 10 s)
whatever the budget says.

Usage:
  enqueue held list    [--source S] [--json]
  enqueue held release (--source S | --id ID | --all) [--by NAME]

The NATS user needs the held records of the bucket <prefix>_limits: in
deploy/nats/accounts.conf that is the user "operator".
`

func held(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, heldUsage)
		return errors.New("held: want list or release")
	}
	switch args[0] {
	case "list":
		return heldList(ctx, args[1:], stdout, stderr)
	case "release":
		return heldRelease(ctx, args[1:], stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, heldUsage)
		return nil
	default:
		fmt.Fprint(stderr, heldUsage)
		return fmt.Errorf("held: unknown subcommand %q: want list or release", args[0])
	}
}

const heldListUsage = `enqueue held list lists held jobs, oldest first: the source, the job id, the
tenant, the device, the ticket, when it was first held, how many deliveries it has
spent held, when the budget allows the next job, and whether it has been released.

Usage:
  enqueue held list [--source S] [--json]

Exit status: 0 listed (also when none is held), 1 the command failed.

Flags:
`

func heldList(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, s := newFlagSet("enqueue held list", heldListUsage, stderr)
	var conn connFlags
	var source string
	var asJSON bool
	conn.define(s)
	fs.StringVar(&source, "source", "", "only the held jobs of this source")
	fs.BoolVar(&asJSON, "json", false, "print each held job's record as a JSON line")
	if err := parse(fs, s, args); err != nil {
		return err
	}
	if source != "" && !wire.ValidToken(source) {
		return fmt.Errorf("--source %q: want one subject token (letters, digits, '-', '_')", source)
	}
	store, closeConn, err := openHeld(ctx, &conn, stderr)
	if err != nil {
		return err
	}
	defer closeConn()
	jobs, err := store.List(ctx, source)
	if err != nil {
		return err
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		for _, h := range jobs {
			if err := enc.Encode(h); err != nil {
				return err
			}
		}
		return nil
	}
	printHeld(stdout, jobs)
	return nil
}

func printHeld(w io.Writer, jobs []quota.Held) {
	if len(jobs) == 0 {
		fmt.Fprintln(w, "no held jobs")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SOURCE\tJOB\tTENANT\tDEVICE\tTICKET\tHELD SINCE\tHOLDS\tBUDGET\tALLOWED AT\tRELEASED")
	for _, h := range jobs {
		released := "-"
		if h.Released {
			released = "by " + orDash(h.ReleasedBy)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n", h.Source, h.JobID, orDash(h.TenantID), orDash(h.ManagedDeviceID),
			orDash(h.Ticket), h.HeldAt.UTC().Format(time.RFC3339), h.Holds, h.Budget, h.Until.UTC().Format(time.RFC3339), released)
	}
	tw.Flush()
	fmt.Fprintf(w, "%d held job(s)\n", len(jobs))
}

const heldReleaseUsage = `enqueue held release releases held jobs: each goes on at its next delivery (within
about 10 s), whatever its source's budget says, and takes none of it. The release is
recorded (--by) and audited when the job goes on.

Usage:
  enqueue held release (--source S | --id ID | --all) [--by NAME]

Exit status: 0 released (also when none matched), 1 the command failed.

Flags:
`

func heldRelease(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, s := newFlagSet("enqueue held release", heldReleaseUsage, stderr)
	var conn connFlags
	var source, id, by string
	var all bool
	conn.define(s)
	fs.StringVar(&source, "source", "", "release the held jobs of this source")
	fs.StringVar(&id, "id", "", "release the held job with this id")
	fs.BoolVar(&all, "all", false, "release every held job")
	fs.StringVar(&by, "by", defaultReleaser(), "who releases, for the record and the audit trail")
	if err := parse(fs, s, args); err != nil {
		return err
	}
	switch {
	case source == "" && id == "" && !all:
		return errors.New("say which held jobs to release: --source S, --id ID or --all")
	case all && (source != "" || id != ""):
		return errors.New("--all releases every held job: give it alone")
	case source != "" && !wire.ValidToken(source):
		return fmt.Errorf("--source %q: want one subject token (letters, digits, '-', '_')", source)
	case id != "" && !wire.ValidID(id):
		return fmt.Errorf("--id %q: not a job id", id)
	case by == "":
		return errors.New("--by: say who releases")
	}
	store, closeConn, err := openHeld(ctx, &conn, stderr)
	if err != nil {
		return err
	}
	defer closeConn()
	jobs, err := store.List(ctx, source)
	if err != nil {
		return err
	}
	released := 0
	for _, h := range jobs {
		if id != "" && h.JobID != id {
			continue
		}
		if _, err := store.Release(ctx, h.Source, h.JobID, by); err != nil {
			if errors.Is(err, quota.ErrNotHeld) {
				continue // it went on meanwhile
			}
			return fmt.Errorf("release job %s: %w", h.JobID, err)
		}
		fmt.Fprintf(stdout, "released %s job %s\n", h.Source, h.JobID)
		released++
	}
	fmt.Fprintf(stdout, "%d job(s) released\n", released)
	return nil
}

// openHeld connects and opens the held records in the limits bucket.
func openHeld(ctx context.Context, conn *connFlags, stderr io.Writer) (*quota.Store, func(), error) {
	nc, js, err := conn.connect(stderr)
	if err != nil {
		return nil, nil, err
	}
	kv, err := js.KeyValue(ctx, conn.names().LimitsBucket())
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("open bucket %s (does a worker run with this prefix?): %w", conn.names().LimitsBucket(), err)
	}
	return quota.New(js, kv, nil), nc.Close, nil
}

// defaultReleaser is the person running the command, as the environment
// names them.
func defaultReleaser() string {
	if u := os.Getenv("USER"); u != "" {
		return u
	}
	return "operator"
}
