package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/google/uuid"

	"github.com/recoverpasscode/recoverpasscode/ratelimit"
	"github.com/recoverpasscode/recoverpasscode/wire"
)

const submitUsage = `enqueue submits one recoverPasscode job, or a batch of them from a file, and
with --wait reports the results.

Usage:
  enqueue --device GUID | --azure-ad-device GUID | --serial S
          [--user ID | --detected-app ID] [--tenant GUID]
          [--ticket T] [--requested-by P] [--key K] [--id ID] [--reply-to S]
          [--not-after T] [--source S] [--follow] [--wait] [--timeout D] [--json]
  enqueue --file devices.csv|devices.jsonl|- [--batch NAME] [--dry-run] [--skip-invalid]
          [--tenant GUID] [--ticket T] [--requested-by P] [--not-after T] [--source S]
          [--wait] [--timeout D] [--output results.csv|results.jsonl]
          [--progress auto|bar|lines|none] [--rate-limit N/D] [--max-pending N]
  enqueue results --batch NAME ...   enqueue dlq list|replay ...   (each has --help)

A batch file is CSV with a header row, or JSON Lines. Its columns (JSON fields) are
managedDeviceId, azureADDeviceId, serialNumber (one of the three per row), userId,
detectedAppId, tenantId, ticket, requestedBy; case does not matter, other columns are an error. --tenant, --ticket and --requested-by fill the
values a row leaves empty. Each row's job id is <batch>-<hash of tenant and device> and its
idempotency key batch/<batch>/<hash>, so running the same batch again submits nothing twice:
rows that already have a result are not sent again, and their results are collected.
Rows naming a device an earlier row names are reported and submitted once.

Every row is checked before anything is published. --dry-run lists the bad rows and
publishes nothing; otherwise a file with bad rows is refused unless --skip-invalid is given.

A device named by --azure-ad-device (its Entra ID device id) or --serial is resolved by the
worker with one Graph read; none or several matches end the job rejected. --follow asks the
workers to poll the device after Graph accepted the action until it reports it done (or
failed, or RECOVER_FOLLOW_FOR passes): a confirmation; with --wait, it is waited for too and
printed after the result (with --json, one JSON object per line: the result, then the
confirmation). The --timeout then covers both.

Exit status: 0 submitted (with --wait: every job succeeded; with --follow too: its device confirmed done), 2 a job ended otherwise,
1 the command failed (bad rows, no connection, --timeout passed), 130 interrupted while
waiting (the jobs go on; run the same command again to follow them).
A flag with a variable in brackets can also be set by that variable; the flag wins.

Flags:
`

// submitOptions are the flags of one job or of a batch file.
type submitOptions struct {
	conn    connFlags
	source  string
	job     wire.Job
	notAft  string
	wait    bool
	timeout time.Duration
	json    bool
	file    fileOptions
}

// fileOptions are the flags that only apply with --file.
type fileOptions struct {
	path        string
	batch       string
	dryRun      bool
	skipInvalid bool
	output      string
	progress    string
	rate        ratelimit.Rate
	maxPending  int
}

func parseSubmit(args []string, stderr io.Writer) (*submitOptions, error) {
	fs, s := newFlagSet("enqueue", submitUsage, stderr)
	o := &submitOptions{}
	o.conn.define(s)
	var rate string
	s.StringVar(&o.source, "source", "RECOVER_SOURCE", "", `submitting system: jobs go to <prefix>.jobs.<source> (default "cli"; "batch" with --file)`)
	fs.StringVar(&o.job.ManagedDeviceID, "device", "", "managed device id (GUID): submit one job")
	fs.StringVar(&o.job.AzureADDeviceID, "azure-ad-device", "", "the device's Entra ID device id (GUID), instead of --device: the worker resolves it")
	fs.StringVar(&o.job.SerialNumber, "serial", "", "the device's serial number, instead of --device: the worker resolves it")
	fs.BoolVar(&o.job.Follow, "follow", false, "after Graph accepts the action, follow the device until it reports the action done; with --wait, wait for that confirmation too")
	fs.StringVar(&o.job.UserID, "user", "", "user id or UPN: use the /users/{id}/managedDevices form")
	fs.StringVar(&o.job.DetectedAppID, "detected-app", "", "detected app id: use the /deviceManagement/detectedApps/{id} form")
	fs.StringVar(&o.job.TenantID, "tenant", "", "tenant of the device (defaults to the worker's AZURE_TENANT_ID); with --file, for rows without tenantId")
	fs.StringVar(&o.job.Ticket, "ticket", "", "ticket the job belongs to; with --file, for rows without ticket")
	fs.StringVar(&o.job.RequestedBy, "requested-by", "", "person or system asking; with --file, for rows without requestedBy")
	fs.StringVar(&o.job.IdempotencyKey, "key", "", "idempotency key (defaults to the job id): one Graph call per key")
	fs.StringVar(&o.job.ID, "id", "", "job id (defaults to a new UUID); re-sending the same id within an hour is stored once")
	fs.StringVar(&o.job.ReplyTo, "reply-to", "", "subject for the result (defaults to <prefix>.results.<source>.<id>)")
	fs.StringVar(&o.notAft, "not-after", "", "RFC 3339 time after which the job (with --file: every job) must not start")
	fs.BoolVar(&o.wait, "wait", false, "wait for the result(s) and report them")
	fs.DurationVar(&o.timeout, "timeout", 0, "with --wait: how long to wait (default 2m for one job, no limit with --file)")
	fs.BoolVar(&o.json, "json", false, "with --wait, one job: print the result as JSON")
	fs.StringVar(&o.file.path, "file", "", "submit a batch: a CSV or JSON Lines file of devices, or - for standard input")
	fs.StringVar(&o.file.batch, "batch", "", "with --file: batch name, 1-64 letters, digits, '-', '_' (default: auto-<hash of the file's devices>)")
	fs.BoolVar(&o.file.dryRun, "dry-run", false, "with --file: check every row and say what would be submitted; publish nothing")
	fs.BoolVar(&o.file.skipInvalid, "skip-invalid", false, "with --file: submit the valid rows of a file that has bad rows (they are listed)")
	fs.StringVar(&o.file.output, "output", "", "with --file --wait: write every result to this file, as CSV or JSON Lines by its extension (.csv, .jsonl)")
	fs.StringVar(&o.file.progress, "progress", "auto", "with --file --wait: bar (redrawn line), lines (a plain line every 10s), none, or auto (bar on a terminal, else lines); on standard error")
	s.StringVar(&rate, "rate-limit", "RECOVER_RATE_LIMIT", "200/20s", "with --file --wait: the workers' rate limit per tenant, N/duration or unlimited, for the time estimate")
	fs.IntVar(&o.file.maxPending, "max-pending", 256, "with --file: publish acknowledgements outstanding at once")
	if err := parse(fs, s, args); err != nil {
		return nil, err
	}
	src, err := sourceOrDefault(o.source, "cli")
	if o.file.path != "" {
		src, err = sourceOrDefault(o.source, "batch")
	}
	if err != nil {
		return nil, err
	}
	o.source = src
	if o.notAft != "" {
		t, err := time.Parse(time.RFC3339, o.notAft)
		if err != nil {
			return nil, fmt.Errorf("--not-after: want an RFC 3339 time: %w", err)
		}
		o.job.NotAfter = &t
	}
	if o.timeout < 0 {
		return nil, errors.New("--timeout must not be negative")
	}
	if o.file.path != "" {
		if o.file.rate, err = ratelimit.ParseRate(rate); err != nil {
			return nil, fmt.Errorf("--rate-limit: %w", err)
		}
		return o, o.checkFile()
	}
	return o, o.checkOne()
}

// checkOne refuses the flags of a batch without --file.
func (o *submitOptions) checkOne() error {
	if o.job.ManagedDeviceID == "" && o.job.AzureADDeviceID == "" && o.job.SerialNumber == "" {
		return errors.New("--device, --azure-ad-device or --serial (one job), or --file (a batch), is required")
	}
	f := o.file
	for flag, set := range map[string]bool{"--batch": f.batch != "", "--dry-run": f.dryRun, "--skip-invalid": f.skipInvalid, "--output": f.output != ""} {
		if set {
			return fmt.Errorf("%s needs --file", flag)
		}
	}
	if o.timeout == 0 {
		o.timeout = 2 * time.Minute
		if o.job.Follow {
			// A device checks in when it checks in: an hour covers most.
			o.timeout = time.Hour
		}
	}
	if o.job.ID == "" {
		o.job.ID = uuid.NewString()
	}
	return nil
}

// submit publishes one job or a batch and, with --wait, reports results.
func submit(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseSubmit(args, stderr)
	if err != nil {
		return err
	}
	if o.file.path != "" {
		return submitFile(ctx, o, stdout, stderr)
	}
	return submitOne(ctx, o, stdout, stderr)
}
