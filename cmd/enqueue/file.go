package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/nats-io/nats.go"

	"github.com/recoverpasscode/recoverpasscode/batch"
	"github.com/recoverpasscode/recoverpasscode/wire"
)

// checkFile refuses flags that make no sense for a batch.
func (o *submitOptions) checkFile() error {
	j := o.job
	for flag, set := range map[string]bool{
		"--device": j.ManagedDeviceID != "", "--user": j.UserID != "", "--detected-app": j.DetectedAppID != "",
		"--azure-ad-device": j.AzureADDeviceID != "", "--serial": j.SerialNumber != "",
		"--follow (set RECOVER_FOLLOW_SOURCES on the workers to follow a source's jobs)": j.Follow,
		"--key": j.IdempotencyKey != "", "--id": j.ID != "", "--reply-to": j.ReplyTo != "", "--json": o.json,
	} {
		if set {
			return fmt.Errorf("%s does not go with --file: a batch's rows come from the file, their ids and keys from the batch", flag)
		}
	}
	if o.file.batch != "" && !batch.ValidName(o.file.batch) {
		return fmt.Errorf("--batch %q: use 1 to 64 letters, digits, '-' or '_'", o.file.batch)
	}
	if o.file.output != "" {
		if !o.wait {
			return errors.New("--output needs --wait (or, later: enqueue results --batch NAME --output FILE)")
		}
		if _, err := batch.OutputFormatOf(o.file.output); err != nil {
			return fmt.Errorf("--output: %w", err)
		}
	}
	switch o.file.progress {
	case "auto", "bar", "lines", "none":
	default:
		return fmt.Errorf("--progress %q: want auto, bar, lines or none", o.file.progress)
	}
	if o.file.maxPending < 1 {
		return errors.New("--max-pending must be at least 1")
	}
	return nil
}

// readBatch reads a batch file (standard input for "-").
func readBatch(path string, opts batch.Options) (*batch.Batch, error) {
	r := stdin
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	opts.Format = batch.FormatOf(path)
	return batch.Read(r, opts)
}

// stdin is where --file - reads from; tests replace it.
var stdin io.Reader = os.Stdin

// submitFile checks a batch file, publishes the rows that have no result
// yet and, with --wait, follows the batch to its end.
func submitFile(ctx context.Context, o *submitOptions, stdout, stderr io.Writer) error {
	b, err := readBatch(o.file.path, batch.Options{
		Name: o.file.batch, Source: o.source, Names: o.conn.names(),
		Defaults: batch.Defaults{TenantID: o.job.TenantID, Ticket: o.job.Ticket, RequestedBy: o.job.RequestedBy, NotAfter: o.job.NotAfter},
	})
	if err != nil {
		return err
	}
	printPlan(stdout, b)
	if len(b.Problems) > 0 && (o.file.dryRun || !o.file.skipInvalid) {
		if o.file.dryRun {
			fmt.Fprintf(stdout, "dry run: %d bad row(s); nothing was published\n", len(b.Problems))
		} else {
			fmt.Fprintf(stdout, "refused: %d bad row(s); nothing was published. Fix them, or pass --skip-invalid to submit the other %d row(s)\n", len(b.Problems), len(b.Rows))
		}
		return errReported
	}
	if len(b.Problems) > 0 {
		fmt.Fprintf(stdout, "--skip-invalid: the %d bad row(s) are left out\n", len(b.Problems))
	}
	if o.file.dryRun {
		fmt.Fprintf(stdout, "dry run: %d job(s) would be published to %s; nothing was published\n", len(b.Rows), o.conn.names().Jobs(b.Source))
		return nil
	}
	if len(b.Rows) == 0 {
		return errors.New("the file has no row to submit")
	}
	if o.file.output != "" {
		// Created before anything is published, so an unwritable path
		// costs nothing; written when the batch is done.
		f, err := os.Create(o.file.output)
		if err != nil {
			return fmt.Errorf("--output: %w", err)
		}
		f.Close()
	}
	nc, js, err := o.conn.connect(stderr)
	if err != nil {
		return err
	}
	defer nc.Close()
	names := o.conn.names()
	reader, err := batch.OpenResults(ctx, js, names, batch.ResultsFilter(names, b.Source, b.Name))
	if err != nil {
		return err
	}
	defer reader.Close()
	outcomes := batch.NewOutcomes()
	if _, err := reader.ReadBacklog(ctx, addRow(b, outcomes)); err != nil {
		if ctx.Err() != nil {
			fmt.Fprintln(stdout, "stopped before anything was published")
			return errInterrupted
		}
		return fmt.Errorf("read the batch's earlier results: %w", err)
	}
	todo := make([]wire.Job, 0, len(b.Rows))
	for _, r := range b.Rows {
		if _, done := outcomes.Get(r.Job.ID); !done {
			todo = append(todo, r.Job)
		}
	}
	if n := outcomes.Len(); n > 0 {
		fmt.Fprintf(stdout, "%d row(s) already have a result from an earlier run: not submitted again\n", n)
	}
	if err := publishRows(ctx, o, nc, b, todo, stdout); err != nil {
		return err
	}
	if !o.wait {
		fmt.Fprintf(stdout, "results: enqueue results --batch %s%s (or run this command again with --wait)\n", b.Name, sourceFlag(b.Source))
		return nil
	}
	w := newWaiter(o, b, reader, outcomes, stderr)
	return w.finish(stdout, w.wait(ctx))
}

// addRow returns a function recording results of the batch's rows; results
// of other rows of a batch with the same name are left out.
func addRow(b *batch.Batch, outcomes *batch.Outcomes) func(wire.Result) {
	return func(r wire.Result) {
		if _, ok := b.Row(r.JobID); ok {
			outcomes.Add(r)
		}
	}
}

func publishRows(ctx context.Context, o *submitOptions, nc *nats.Conn, b *batch.Batch, todo []wire.Job, stdout io.Writer) error {
	if len(todo) == 0 {
		return nil
	}
	subject := o.conn.names().Jobs(b.Source)
	p := &batch.Publisher{NC: nc, MaxPending: o.file.maxPending}
	st, err := p.Publish(ctx, subject, todo)
	if err != nil {
		if ctx.Err() != nil {
			fmt.Fprintf(stdout, "stopped after %d of %d job(s) were acknowledged; run the same command again to send the rest (nothing is sent twice)\n", st.Published, len(todo))
			return errInterrupted
		}
		return fmt.Errorf("%d of %d job(s) acknowledged before an error; running the same command again sends the rest: %w", st.Published, len(todo), err)
	}
	fmt.Fprintf(stdout, "published %d job(s) to %s in %s (%.0f jobs/s)", st.Published, subject, batch.Duration(st.Elapsed), st.Rate())
	if st.Duplicates > 0 {
		fmt.Fprintf(stdout, "; %d of them were already in the jobs stream from a run within the last hour, which keeps one copy", st.Duplicates)
	}
	fmt.Fprintln(stdout)
	return nil
}

// printPlan says what the file holds: the batch, its rows, bad rows and
// duplicates.
func printPlan(w io.Writer, b *batch.Batch) {
	how := "given"
	if b.NameDerived {
		how = "derived from the file's devices; pass --batch " + b.Name + " when running an edited copy of this file, so its rows keep their keys"
	}
	fmt.Fprintf(w, "batch %s (%s)\n", b.Name, how)
	fmt.Fprintf(w, "%d row(s) to submit as source %s", len(b.Rows), b.Source)
	if b.Blank > 0 {
		fmt.Fprintf(w, ", %d blank row(s) skipped", b.Blank)
	}
	fmt.Fprintln(w)
	for _, d := range b.Duplicates {
		fmt.Fprintf(w, "duplicate: %s\n", d)
	}
	if len(b.Problems) > 0 {
		fmt.Fprintf(w, "%d bad row(s):\n", len(b.Problems))
		for _, p := range b.Problems {
			fmt.Fprintf(w, "  %s\n", p)
		}
	}
}

func sourceFlag(source string) string {
	if source == batch.DefaultSource {
		return ""
	}
	return " --source " + source
}
