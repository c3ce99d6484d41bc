package main

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/recoverpasscode/recoverpasscode/batch"
	"github.com/recoverpasscode/recoverpasscode/wire"
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

// replay is the job a dead letter is replayed as.
type replay struct {
	from    deadLetter
	job     wire.Job
	subject string
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
	letters, superseded := latestPerJob(letters)
	if superseded > 0 {
		fmt.Fprintf(stdout, "%d dead letter(s) left out: a later dead letter of the same job (an earlier replay that failed again) is replayed instead\n", superseded)
	}
	var replays []replay
	skipped := 0
	for _, d := range letters {
		r, why := o.plan(names, d)
		if why != "" {
			skipped++
			fmt.Fprintf(stdout, "skipped #%d job %s: %s\n", d.Seq, d.JobID, why)
			continue
		}
		replays = append(replays, r)
	}
	sameKeyStored := 0
	for _, r := range replays {
		verb := "replayed"
		if o.dryRun {
			verb = "would replay"
		} else if err := publishReplay(ctx, js, r); err != nil {
			return err
		}
		keyNote := "same key " + r.job.IdempotencyKey
		if o.newKey {
			keyNote = "new key " + r.job.IdempotencyKey
		} else if storedFailure(r.from) {
			sameKeyStored++
			keyNote += ", whose record holds the failure"
		}
		fmt.Fprintf(stdout, "%s #%d job %s as %s on %s (%s)\n", verb, r.from.Seq, r.from.JobID, r.job.ID, r.subject, keyNote)
	}
	if sameKeyStored > 0 {
		fmt.Fprintf(stdout, "note: %d of these will be answered from their key's record with the same failure, without calling Graph; use --new-key to call Graph again\n", sameKeyStored)
	}
	done := "replayed"
	if o.dryRun {
		done = "would be replayed; nothing was published"
	}
	fmt.Fprintf(stdout, "%d dead letter(s) matched: %d %s, %d skipped\n", len(letters)+superseded, len(replays), done, skipped)
	if skipped > 0 {
		return errNotSucceeded
	}
	return nil
}

// latestPerJob keeps the latest dead letter of each job, a replay's
// counting for the job it replays (see batch.RowID): replaying an older one
// as well would act twice for one job.
func latestPerJob(letters []deadLetter) (latest []deadLetter, superseded int) {
	last := map[string]int{}
	for i, d := range letters {
		last[d.Source+"/"+batch.RowID(d.JobID)] = i // letters are oldest first
	}
	for i, d := range letters {
		if last[d.Source+"/"+batch.RowID(d.JobID)] == i {
			latest = append(latest, d)
		}
	}
	return latest, len(letters) - len(latest)
}

// plan makes the replay of a dead letter, or says why it is skipped.
func (o *replayOptions) plan(names wire.Names, d deadLetter) (replay, string) {
	if d.Result != nil && d.Result.Status == wire.Rejected && !o.includeRejected {
		return replay{}, "rejected (" + batch.Message(*d.Result) + "); pass --include-rejected once the cause is fixed"
	}
	if !wire.ValidToken(d.Source) || d.Source == "unknown" {
		return replay{}, fmt.Sprintf("no source to submit it to (%q)", d.Source)
	}
	data := []byte(d.Job)
	if d.Job == "" {
		var err error
		if data, err = base64.StdEncoding.DecodeString(d.JobBase64); err != nil || len(data) == 0 {
			return replay{}, "the dead letter holds no original message"
		}
	}
	j, err := wire.Decode(data, wire.Meta{MsgID: nats.Header(d.Headers).Get(jetstream.MsgIDHeader)})
	if err != nil {
		return replay{}, "the original message is not a valid job: " + err.Error()
	}
	key := j.IdempotencyKey
	if d.Result != nil && d.Result.IdempotencyKey != "" {
		key = d.Result.IdempotencyKey // the key the worker used, whatever filled it
	}
	if o.newKey {
		key = batch.ReplayKey(key, d.Seq)
	}
	j.ID = batch.ReplayID(d.JobID, d.Seq)
	j.IdempotencyKey = key
	j.ReplyTo = replayReplyTo(names, j.ReplyTo, d.JobID, j.ID)
	return replay{from: d, job: j, subject: names.Jobs(d.Source)}, ""
}

// replayReplyTo moves a reply subject in the results stream that ends with
// the old job id (a batch's, or an explicit default) to the new id; other
// reply subjects (an inbox) are kept.
func replayReplyTo(names wire.Names, replyTo, oldID, newID string) string {
	if replyTo == "" || !names.IsResult(replyTo) {
		return replyTo
	}
	if base, ok := strings.CutSuffix(replyTo, "."+oldID); ok {
		return base + "." + newID
	}
	return replyTo
}

// storedFailure reports whether a dead letter's failure is kept in its
// key's record, so a replay with the same key is answered with it: Graph
// refused the call for good (a 4xx other than 408 and 429, a 501 or 505),
// or the job was itself answered from the record.
func storedFailure(d deadLetter) bool {
	r := d.Result
	if r == nil || r.Status != wire.Failed {
		return false
	}
	if r.Replayed {
		return true
	}
	if r.Graph == nil {
		return false
	}
	s := r.Graph.Status
	return (s >= 400 && s < 500 && s != 401 && s != 408 && s != 429) || s == 501 || s == 505
}

func publishReplay(ctx context.Context, js jetstream.JetStream, r replay) error {
	if _, err := publishJob(ctx, js, r.subject, &r.job); err != nil {
		return fmt.Errorf("replay #%d: %w", r.from.Seq, err)
	}
	return nil
}
