package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/recoverpasscode/recoverpasscode/batch"
	"github.com/recoverpasscode/recoverpasscode/wire"
)

const resultsUsage = `enqueue results shows the outcome of a batch from the results stream, without
waiting and without submitting anything: counts by status, then the rows that did not
succeed with their device, Graph error code and message.

Usage:
  enqueue results --batch NAME [--source S] [--output FILE] [--json]
  enqueue results --file devices.csv [--batch NAME] [--tenant GUID] [--source S] [--output FILE] [--json]

A batch's results are stored under <prefix>.results.<source>.<batch>.<jobId>, so the batch
name is enough. With --file, the batch name is derived from the file as enqueue --file does
(unless --batch is given), rows are shown with their line, and rows without a result yet
are counted as pending. A row's latest result counts: a re-run answered from the
idempotency record, or a replayed dead letter, replaces the earlier one.

Exit status: 0 every result succeeded (with --file: and every row has one), 2 some did not
(or are pending), 1 the command failed (no result found, no connection).

Flags:
`

type resultsOptions struct {
	conn   connFlags
	source string
	tenant string
	batch  string
	file   string
	output string
	json   bool
}

func parseResults(args []string, stderr io.Writer) (*resultsOptions, error) {
	fs, s := newFlagSet("enqueue results", resultsUsage, stderr)
	o := &resultsOptions{}
	o.conn.define(s)
	s.StringVar(&o.source, "source", "RECOVER_SOURCE", "", `submitting system the batch was sent as (default "batch")`)
	fs.StringVar(&o.batch, "batch", "", "batch name (required unless --file is given)")
	fs.StringVar(&o.file, "file", "", "the batch's file (or - for standard input): derives the name, adds line numbers and pending rows")
	fs.StringVar(&o.tenant, "tenant", "", "with --file: the --tenant the batch was submitted with (it is part of each row's id)")
	fs.StringVar(&o.output, "output", "", "write every result to this file, as CSV or JSON Lines by its extension (.csv, .jsonl)")
	fs.BoolVar(&o.json, "json", false, "print every result as a JSON line on standard output instead of the summary")
	if err := parse(fs, s, args); err != nil {
		return nil, err
	}
	src, err := sourceOrDefault(o.source, batch.DefaultSource)
	if err != nil {
		return nil, err
	}
	o.source = src
	if o.batch == "" && o.file == "" {
		return nil, errors.New("--batch NAME (or --file) is required")
	}
	if o.batch != "" && !batch.ValidName(o.batch) {
		return nil, fmt.Errorf("--batch %q: use 1 to 64 letters, digits, '-' or '_'", o.batch)
	}
	if o.output != "" {
		if _, err := batch.OutputFormatOf(o.output); err != nil {
			return nil, fmt.Errorf("--output: %w", err)
		}
	}
	return o, nil
}

// results prints the stored results of a batch.
func results(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseResults(args, stderr)
	if err != nil {
		return err
	}
	var b *batch.Batch
	if o.file != "" {
		if b, err = readBatch(o.file, batch.Options{Name: o.batch, Source: o.source, Names: o.conn.names(), Defaults: batch.Defaults{TenantID: o.tenant}}); err != nil {
			return err
		}
		o.batch = b.Name
	}
	nc, js, err := o.conn.connect(stderr)
	if err != nil {
		return err
	}
	defer nc.Close()
	names := o.conn.names()
	reader, err := batch.OpenResults(ctx, js, names, batch.ResultsFilter(names, o.source, o.batch))
	if err != nil {
		return err
	}
	defer reader.Close()
	outcomes := batch.NewOutcomes()
	add := outcomes.Add
	if b != nil {
		add = func(r wire.Result) bool { addRow(b, outcomes)(r); return true }
	}
	skipped, err := reader.ReadBacklog(ctx, func(r wire.Result) { add(r) })
	if err != nil {
		return err
	}
	if skipped > 0 {
		fmt.Fprintf(stderr, "enqueue: %d message(s) under the batch's subjects are not results; skipped\n", skipped)
	}
	if outcomes.Len() == 0 && b == nil {
		return fmt.Errorf("no result stored for batch %s of source %s (%s): check the name and --source; results are kept 30 days", o.batch, o.source, batch.ResultsFilter(names, o.source, o.batch))
	}
	return reportResults(o, b, outcomes, stdout)
}

func reportResults(o *resultsOptions, b *batch.Batch, outcomes *batch.Outcomes, stdout io.Writer) error {
	line := func(string) int { return 0 }
	rows := 0
	if b != nil {
		rows = len(b.Rows)
		line = func(id string) int { r, _ := b.Row(id); return r.Line }
	}
	entries := entriesOf(outcomes, line)
	if o.json {
		if err := batch.WriteResults(stdout, batch.OutputJSONL, entries); err != nil {
			return err
		}
	} else {
		sum := batch.Summary{Batch: o.batch, Rows: rows, Outcomes: outcomes, Line: line, More: "all are in --output FILE"}
		if err := sum.Write(stdout); err != nil {
			return err
		}
	}
	if o.output != "" {
		if err := writeResultsFile(o.output, entries); err != nil {
			return err
		}
		if !o.json { // standard output then holds only the results
			fmt.Fprintf(stdout, "wrote %d result(s) to %s\n", len(entries), o.output)
		}
	}
	if outcomes.Counts().NotSucceeded() > 0 || outcomes.Len() < rows {
		return errNotSucceeded
	}
	return nil
}

// entriesOf lists the latest result of every row with its line, in line
// order.
func entriesOf(outcomes *batch.Outcomes, line func(rowID string) int) []batch.Entry {
	results := outcomes.Results(line)
	entries := make([]batch.Entry, len(results))
	for i, r := range results {
		entries[i] = batch.Entry{Line: line(batch.RowID(r.JobID)), Result: r}
	}
	return entries
}

func writeResultsFile(path string, entries []batch.Entry) error {
	f, err := batch.OutputFormatOf(path)
	if err != nil {
		return err
	}
	file, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("--output: %w", err)
	}
	if err := batch.WriteResults(file, f, entries); err != nil {
		file.Close()
		return err
	}
	if err := file.Close(); err != nil {
		return fmt.Errorf("--output: %w", err)
	}
	return nil
}
