package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/recoverpasscode/recoverpasscode/batch"
	"github.com/recoverpasscode/recoverpasscode/wire"
)

// renderEvery is how often the progress is redrawn.
const renderEvery = 250 * time.Millisecond

// errTimedOut marks a wait that --timeout ended.
var errTimedOut = errors.New("timed out")

// waiter follows a batch's results until every row has one.
type waiter struct {
	b        *batch.Batch
	reader   *batch.Results
	outcomes *batch.Outcomes
	render   batch.Renderer
	progress *batch.Progress
	timeout  time.Duration
	output   string
}

func newWaiter(o *submitOptions, b *batch.Batch, reader *batch.Results, outcomes *batch.Outcomes, stderr io.Writer) *waiter {
	return &waiter{
		b: b, reader: reader, outcomes: outcomes,
		render:   renderer(o.file.progress, stderr),
		progress: batch.NewProgress(len(b.Rows), o.file.rate, b.Tenants(), time.Now(), outcomes.Len()),
		timeout:  o.timeout,
		output:   o.file.output,
	}
}

// renderer picks the progress display: a bar on a terminal, plain lines
// elsewhere.
func renderer(mode string, w io.Writer) batch.Renderer {
	switch mode {
	case "none":
		return noProgress{}
	case "bar":
		return batch.NewBar(w, 0)
	case "lines":
		return batch.NewLines(w, 0)
	}
	if t, ok := w.(interface{ terminal() bool }); ok && t.terminal() {
		return batch.NewBar(w, 0)
	}
	return batch.NewLines(w, 0)
}

type noProgress struct{}

func (noProgress) Update(batch.Snapshot) {}
func (noProgress) Finish(batch.Snapshot) {}

// wait reads results until every row has one. It returns nil then, the
// context's error when stopped, errTimedOut after the timeout.
func (w *waiter) wait(ctx context.Context) error {
	if w.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, w.timeout, errTimedOut)
		defer cancel()
	}
	rctx, stop := context.WithCancel(ctx)
	defer stop()
	results := make(chan wire.Result)
	failed := make(chan error, 1)
	go w.read(rctx, results, failed)
	tick := time.NewTicker(renderEvery)
	defer tick.Stop()
	add := addRow(w.b, w.outcomes)
	if w.outcomes.Len() < len(w.b.Rows) {
		w.render.Update(w.progress.Update(time.Now(), w.outcomes.Counts()))
	}
	for w.outcomes.Len() < len(w.b.Rows) {
		select {
		case r := <-results:
			add(r)
		case <-tick.C:
			w.render.Update(w.progress.Update(time.Now(), w.outcomes.Counts()))
		case err := <-failed:
			return err
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
	return nil
}

// read passes results on until ctx ends or reading fails.
func (w *waiter) read(ctx context.Context, results chan<- wire.Result, failed chan<- error) {
	for {
		r, err := w.reader.Next(ctx)
		var nr *batch.NotResultError
		switch {
		case errors.As(err, &nr):
			continue
		case err != nil:
			if ctx.Err() == nil {
				failed <- err
			}
			return
		}
		select {
		case results <- r:
		case <-ctx.Done():
			return
		}
	}
}

// finish draws the last progress, prints the summary, writes the output
// file, and turns the wait's outcome into the command's.
func (w *waiter) finish(stdout io.Writer, waitErr error) error {
	w.render.Finish(w.progress.Update(time.Now(), w.outcomes.Counts()))
	sum := batch.Summary{
		Batch: w.b.Name, Rows: len(w.b.Rows), Outcomes: w.outcomes, Line: w.line,
		More: "all are in the --output file, or: enqueue results --batch " + w.b.Name + " --output FILE",
	}
	if err := sum.Write(stdout); err != nil {
		return err
	}
	if w.output != "" {
		if err := writeResultsFile(w.output, entriesOf(w.outcomes, w.line)); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "wrote %d result(s) to %s\n", w.outcomes.Len(), w.output)
	}
	pending := len(w.b.Rows) - w.outcomes.Len()
	switch {
	case errors.Is(waitErr, errTimedOut), errors.Is(waitErr, context.Canceled):
		fmt.Fprintf(stdout, "stopped waiting after %s with %d row(s) still pending: the batch is not cancelled, the workers go on.\n", batch.Duration(w.progress.Update(time.Now(), w.outcomes.Counts()).Elapsed), pending)
		fmt.Fprintf(stdout, "To follow it again, run the same command again (nothing is submitted twice); to see its results: enqueue results --batch %s%s\n", w.b.Name, sourceFlag(w.b.Source))
		if errors.Is(waitErr, errTimedOut) {
			return fmt.Errorf("--timeout %s passed before every row had a result", batch.Duration(w.timeout))
		}
		return errInterrupted
	case waitErr != nil:
		return fmt.Errorf("following the batch's results: %w (the batch goes on; enqueue results --batch %s shows its results)", waitErr, w.b.Name)
	}
	if c := w.outcomes.Counts(); c.NotSucceeded() > 0 {
		return errNotSucceeded
	}
	return nil
}

func (w *waiter) line(rowID string) int {
	r, ok := w.b.Row(rowID)
	if !ok {
		return 0
	}
	return r.Line
}
