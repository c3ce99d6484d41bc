package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/recoverpasscode/recoverpasscode/batch"
	"github.com/recoverpasscode/recoverpasscode/dlq"
	"github.com/recoverpasscode/recoverpasscode/wire"
)

// submitOne publishes one job and, with --wait, prints its result.
func submitOne(ctx context.Context, o *submitOptions, stdout, stderr io.Writer) error {
	// The worker validates too; checking here gives the person the error
	// before anything is published.
	if err := o.job.ValidateDevice(); err != nil {
		return err
	}
	nc, js, err := o.conn.connect(stderr)
	if err != nil {
		return err
	}
	defer nc.Close()
	names := o.conn.names()
	resultSubject := o.job.ReplyTo
	if resultSubject == "" {
		resultSubject = names.Result(o.source, o.job.ID)
	}
	var results chan *nats.Msg
	if o.wait {
		results = make(chan *nats.Msg, 1)
		sub, err := nc.ChanSubscribe(resultSubject, results)
		if err != nil {
			return fmt.Errorf("subscribe to %s: %w", resultSubject, err)
		}
		defer sub.Unsubscribe()
	}
	var confirmations chan *nats.Msg
	if o.wait && o.job.Follow {
		confirmations = make(chan *nats.Msg, 1)
		subject := names.Confirmation(o.source, o.job.ID)
		sub, err := nc.ChanSubscribe(subject, confirmations)
		if err != nil {
			return fmt.Errorf("subscribe to %s: %w", subject, err)
		}
		defer sub.Unsubscribe()
	}
	ack, err := publishJob(ctx, js, names.Jobs(o.source), &o.job)
	if err != nil {
		return err
	}
	if !o.wait {
		fmt.Fprintf(stdout, "submitted job %s (stream %s, sequence %d%s); result on %s\n", o.job.ID, ack.Stream, ack.Sequence, dupNote(ack), resultSubject)
		return nil
	}
	wctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	res, err := awaitResult(wctx, js, names, resultSubject, results)
	if err != nil {
		return fmt.Errorf("job %s submitted, but %w", o.job.ID, err)
	}
	if o.json && o.job.Follow {
		printJSONLine(stdout, res) // and the confirmation on the next line
	} else {
		printResult(stdout, res, o.json)
	}
	if res.Status != wire.Succeeded {
		return errNotSucceeded
	}
	if !res.Follow {
		return nil
	}
	if !o.json {
		fmt.Fprintf(stdout, "following device %s until it reports the action done (a device does so when it next checks in)...\n", res.ManagedDeviceID)
	}
	c, err := awaitConfirmation(wctx, js, names, names.Confirmation(o.source, o.job.ID), confirmations)
	if err != nil {
		return fmt.Errorf("job %s succeeded, but %w", o.job.ID, err)
	}
	if o.json {
		printJSONLine(stdout, c)
	} else {
		printConfirmation(stdout, c)
	}
	if c.State != wire.StateDone {
		return errNotSucceeded
	}
	return nil
}

func dupNote(ack *jetstream.PubAck) string {
	if ack.Duplicate {
		return ", a duplicate of an earlier submission"
	}
	return ""
}

// publishJob publishes j with Nats-Msg-Id set to its id, so a re-sent job is
// stored once (dlq.PublishJob).
func publishJob(ctx context.Context, js jetstream.JetStream, subject string, j *wire.Job) (*jetstream.PubAck, error) {
	return dlq.PublishJob(ctx, js, subject, j)
}

// awaitResult waits for the result on the subscription, or finds it already
// stored (a re-sent job whose result exists).
func awaitResult(ctx context.Context, js jetstream.JetStream, names wire.Names, subject string, live <-chan *nats.Msg) (*wire.Result, error) {
	stored := func(ctx context.Context) (*wire.Result, bool) { return storedResult(ctx, js, names, subject) }
	return await(ctx, live, stored, "result", "the job stays queued and its result will be stored in the results stream")
}

// storedResult reads the last result stored on subject through an ordered
// consumer filtered on it, which a source's NATS user may create for its
// own results (a direct get it may not make).
func storedResult(ctx context.Context, js jetstream.JetStream, names wire.Names, subject string) (*wire.Result, bool) {
	if !names.IsResult(subject) {
		return nil, false
	}
	gctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	r, err := batch.OpenResults(gctx, js, names, subject)
	if err != nil {
		return nil, false
	}
	defer r.Close()
	var last *wire.Result
	if _, err := r.ReadBacklog(gctx, func(res wire.Result) { last = &res }); err != nil {
		return nil, false
	}
	return last, last != nil
}

func printResult(w io.Writer, res *wire.Result, asJSON bool) {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(res)
		return
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s: device %s, job %s", res.Status, res.ManagedDeviceID, res.JobID)
	if res.Replayed {
		b.WriteString(", replayed from an earlier job with the same key")
	}
	if res.Graph != nil {
		fmt.Fprintf(&b, ", graph %d", res.Graph.Status)
		if res.Graph.ErrorCode != "" {
			fmt.Fprintf(&b, " %s", res.Graph.ErrorCode)
		}
		if res.Graph.RequestID != "" {
			fmt.Fprintf(&b, " (request-id %s)", res.Graph.RequestID)
		}
	}
	fmt.Fprintf(&b, ", %d attempt(s)", res.Attempts)
	if res.Error != "" {
		fmt.Fprintf(&b, ": %s", res.Error)
	}
	if res.Uncertain {
		fmt.Fprintf(&b, " [uncertain: %s]", res.UncertainReason)
	}
	fmt.Fprintln(w, b.String())
}
