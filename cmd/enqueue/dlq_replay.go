package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/recoverpasscode/recoverpasscode/dlq"
)

const dlqReplayUsage = `enqueue dlq replay submits dead-lettered jobs again, to the subject of their source.

Usage:
  enqueue dlq replay (--source S | --batch NAME | --id ID | --all) [--new-key]
                     [--include-rejected] [--dry-run]

Only the latest dead letter of each job is replayed (a replay that failed again leaves a
newer one). Each replay is a new job: its id is the original id plus "-r<DLQ sequence>" (an earlier
replay suffix replaced), and a result sent to <prefix>.results.<source>[.<batch>].<old id>
goes to the same place under the new id, so enqueue results --batch counts the replay for
its row. Replaying one dead letter twice gives the same id and key: it is stored once
within the jobs stream's duplicate window, and at most one Graph call is made per key.

The replay keeps the job's idempotency key unless --new-key is given. With the same key, a
job whose failure was stored in its key's record (Graph refused it with a 4xx, or it was
answered from the record) is answered with that failure again without calling Graph; a job
that failed on throttling or 5xx after its retries released its key and is tried again.
--new-key gives each replay the key "<key>/r<DLQ sequence>" so Graph is called again.

Rejected jobs (invalid, or a tenant the workers may not act on) would be rejected again:
they are listed and skipped unless --include-rejected is given, for when their cause was
fixed (e.g. the tenant was added to RECOVER_TENANTS). A dead letter whose original message
is not a valid job cannot be replayed and is listed.

Exit status: 0 every selected dead letter was replayed (or nothing matched), 2 some were
skipped, 1 the command failed.

Flags:
`

type replayOptions struct {
	conn            connFlags
	sel             selector
	all             bool
	newKey          bool
	includeRejected bool
	dryRun          bool
}

func parseReplay(args []string, stderr io.Writer) (*replayOptions, error) {
	fs, s := newFlagSet("enqueue dlq replay", dlqReplayUsage, stderr)
	o := &replayOptions{}
	o.conn.define(s)
	o.sel.define(fs)
	fs.BoolVar(&o.all, "all", false, "replay every dead letter (required when no --source, --batch or --id is given)")
	fs.BoolVar(&o.newKey, "new-key", false, "give each replay a fresh idempotency key, <key>/r<DLQ sequence>, so Graph is called again")
	fs.BoolVar(&o.includeRejected, "include-rejected", false, "replay rejected jobs too")
	fs.BoolVar(&o.dryRun, "dry-run", false, "say what would be replayed; publish nothing")
	if err := parse(fs, s, args); err != nil {
		return nil, err
	}
	if err := o.sel.check(); err != nil {
		return nil, err
	}
	if o.sel.empty() && !o.all {
		return nil, errors.New("choose what to replay: --source S, --batch NAME, --id ID, or --all")
	}
	return o, nil
}

func dlqReplay(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseReplay(args, stderr)
	if err != nil {
		return err
	}
	nc, js, err := o.conn.connect(stderr)
	if err != nil {
		return err
	}
	defer nc.Close()
	names := o.conn.names()
	letters, err := readDeadLetters(ctx, js, names, &o.sel)
	if err != nil {
		return err
	}
	plan := dlq.PlanReplays(names, letters, dlq.Options{NewKey: o.newKey, IncludeRejected: o.includeRejected})
	if plan.Superseded > 0 {
		fmt.Fprintf(stdout, "%d dead letter(s) left out: a later dead letter of the same job (an earlier replay that failed again) is replayed instead\n", plan.Superseded)
	}
	for _, s := range plan.Skipped {
		why := strings.Replace(s.Why, "include rejected jobs once", "pass --include-rejected once", 1)
		fmt.Fprintf(stdout, "skipped #%d job %s: %s\n", s.From.Seq, s.From.JobID, why)
	}
	for _, r := range plan.Replays {
		verb := "replayed"
		if o.dryRun {
			verb = "would replay"
		} else if err := dlq.Publish(ctx, js, r); err != nil {
			return err
		}
		keyNote := "same key " + r.Job.IdempotencyKey
		if o.newKey {
			keyNote = "new key " + r.Job.IdempotencyKey
		} else if r.SameKeyStored {
			keyNote += ", whose record holds the failure"
		}
		fmt.Fprintf(stdout, "%s #%d job %s as %s on %s (%s)\n", verb, r.From.Seq, r.From.JobID, r.Job.ID, r.Subject, keyNote)
	}
	if n := plan.SameKeyStored(); n > 0 {
		fmt.Fprintf(stdout, "note: %d of these will be answered from their key's record with the same failure, without calling Graph; use --new-key to call Graph again\n", n)
	}
	done := "replayed"
	if o.dryRun {
		done = "would be replayed; nothing was published"
	}
	fmt.Fprintf(stdout, "%d dead letter(s) matched: %d %s, %d skipped\n", plan.Matched(), len(plan.Replays), done, len(plan.Skipped))
	if len(plan.Skipped) > 0 {
		return errNotSucceeded
	}
	return nil
}
