package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/recoverpasscode/recoverpasscode/internal/envflag"
	"github.com/recoverpasscode/recoverpasscode/job"
	"github.com/recoverpasscode/recoverpasscode/queue"
)

const submitUsage = `enqueue submits one recoverPasscode job and, with --wait, prints its result.

Usage:
  enqueue --device GUID [--user ID | --detected-app ID] [--tenant GUID]
          [--ticket T] [--requested-by P] [--key K] [--source S] [--wait] [--timeout D] [--json]

Exit status: 0 submitted (with --wait: succeeded), 2 the job ended otherwise, 1 the command failed.
Every flag can also be set by the environment variable in brackets; a flag wins.

Flags:
`

type submitOptions struct {
	nats    queue.Conn
	prefix  string
	source  string
	job     job.Job
	notAft  string
	wait    bool
	timeout time.Duration
	json    bool
}

func parseSubmit(args []string, stderr io.Writer) (*submitOptions, error) {
	fs := flag.NewFlagSet("enqueue", flag.ContinueOnError)
	fs.SetOutput(stderr)
	s := envflag.New(fs)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), submitUsage)
		fs.PrintDefaults()
	}
	o := &submitOptions{}
	o.nats.Flags(s)
	s.StringVar(&o.prefix, "prefix", "RECOVER_PREFIX", queue.DefaultPrefix, "first token of every subject")
	s.StringVar(&o.source, "source", "RECOVER_SOURCE", "cli", "submitting system: the job goes to <prefix>.jobs.<source>")
	fs.StringVar(&o.job.ManagedDeviceID, "device", "", "managed device id (GUID), required")
	fs.StringVar(&o.job.UserID, "user", "", "user id or UPN: use the /users/{id}/managedDevices form")
	fs.StringVar(&o.job.DetectedAppID, "detected-app", "", "detected app id: use the /deviceManagement/detectedApps/{id} form")
	fs.StringVar(&o.job.TenantID, "tenant", "", "tenant of the device (defaults to the worker's AZURE_TENANT_ID)")
	fs.StringVar(&o.job.Ticket, "ticket", "", "ticket the job belongs to")
	fs.StringVar(&o.job.RequestedBy, "requested-by", "", "person or system asking")
	fs.StringVar(&o.job.IdempotencyKey, "key", "", "idempotency key (defaults to the job id): one Graph call per key")
	fs.StringVar(&o.job.ID, "id", "", "job id (defaults to a new UUID); re-sending the same id within an hour is stored once")
	fs.StringVar(&o.job.ReplyTo, "reply-to", "", "subject for the result (defaults to <prefix>.results.<source>.<id>)")
	fs.StringVar(&o.notAft, "not-after", "", "RFC 3339 time after which the job must not start")
	fs.BoolVar(&o.wait, "wait", false, "wait for the result and print it")
	fs.DurationVar(&o.timeout, "timeout", 2*time.Minute, "with --wait: how long to wait")
	fs.BoolVar(&o.json, "json", false, "with --wait: print the result as JSON")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q (see --help)", fs.Arg(0))
	}
	if err := s.Err(); err != nil {
		return nil, err
	}
	if o.job.ManagedDeviceID == "" {
		return nil, errors.New("--device is required")
	}
	if !queue.ValidToken(o.source) {
		return nil, fmt.Errorf("--source %q: want one subject token (letters, digits, '-', '_')", o.source)
	}
	if o.notAft != "" {
		t, err := time.Parse(time.RFC3339, o.notAft)
		if err != nil {
			return nil, fmt.Errorf("--not-after: want an RFC 3339 time: %w", err)
		}
		o.job.NotAfter = &t
	}
	if o.job.ID == "" {
		o.job.ID = uuid.NewString()
	}
	return o, nil
}

// submit publishes one job and, with --wait, prints its result.
func submit(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseSubmit(args, stderr)
	if err != nil {
		return err
	}
	// The worker validates too; checking here gives the person the error
	// before anything is published.
	if err := o.job.Target().Validate(); err != nil {
		return err
	}
	nc, err := o.nats.Connect("recoverpasscode enqueue", zerolog.Nop())
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	names := queue.Names{Prefix: o.prefix}
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
	printResult(stdout, res, o.json)
	if res.Status != job.Succeeded {
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
// stored once.
func publishJob(ctx context.Context, js jetstream.JetStream, subject string, j *job.Job) (*jetstream.PubAck, error) {
	data, err := json.Marshal(j)
	if err != nil {
		return nil, err
	}
	m := nats.NewMsg(subject)
	m.Data = data
	m.Header.Set(jetstream.MsgIDHeader, j.ID)
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	ack, err := js.PublishMsg(pctx, m)
	if errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders) {
		return nil, fmt.Errorf("publish to %s: no stream answered: is a worker running? (it creates the streams): %w", subject, err)
	}
	if err != nil {
		return nil, fmt.Errorf("publish to %s: %w", subject, err)
	}
	return ack, nil
}

// awaitResult waits for the result on the subscription, or finds it already
// stored (a re-sent job whose result exists).
func awaitResult(ctx context.Context, js jetstream.JetStream, names queue.Names, subject string, live <-chan *nats.Msg) (*job.Result, error) {
	if res, ok := storedResult(ctx, js, names, subject); ok {
		return res, nil
	}
	select {
	case m := <-live:
		var res job.Result
		if err := json.Unmarshal(m.Data, &res); err != nil {
			return nil, fmt.Errorf("the result is not valid JSON: %w", err)
		}
		return &res, nil
	case <-ctx.Done():
		if res, ok := storedResult(context.WithoutCancel(ctx), js, names, subject); ok {
			return res, nil
		}
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return nil, errors.New("no result arrived in time; the job stays queued and its result will be stored in the results stream")
		}
		return nil, errors.New("stopped waiting; the job stays queued and its result will be stored in the results stream")
	}
}

func storedResult(ctx context.Context, js jetstream.JetStream, names queue.Names, subject string) (*job.Result, bool) {
	if !names.IsResult(subject) {
		return nil, false
	}
	gctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	stream, err := js.Stream(gctx, names.ResultsStream())
	if err != nil {
		return nil, false
	}
	m, err := stream.GetLastMsgForSubject(gctx, subject)
	if err != nil {
		return nil, false
	}
	var res job.Result
	if json.Unmarshal(m.Data, &res) != nil {
		return nil, false
	}
	return &res, true
}

func printResult(w io.Writer, res *job.Result, asJSON bool) {
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
