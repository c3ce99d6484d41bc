package job

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/recoverpasscode/recoverpasscode/graph"
	"github.com/recoverpasscode/recoverpasscode/idempotency"
	"github.com/recoverpasscode/recoverpasscode/quota"
	"github.com/recoverpasscode/recoverpasscode/ratelimit"
	"github.com/recoverpasscode/recoverpasscode/wire"
)

// Recoverer performs the Graph action. *graph.Client implements it.
type Recoverer interface {
	RecoverPasscode(ctx context.Context, t wire.Target) (graph.Response, error)
}

// Tokens supplies a tenant's token before a permit is taken, so that no
// token round trip lies between a permit and the call it allows, and
// refreshes it after Graph answered 401. graph.TokenSource implements it.
type Tokens interface {
	Token(ctx context.Context, tenantID string) (string, error)
	Refresh(ctx context.Context, tenantID string) (string, error)
}

// Limiter is the fleet-wide rate limit. *ratelimit.Limiter implements it.
type Limiter interface {
	Take(ctx context.Context, tenantID string) (ratelimit.Permit, error)
	Pause(ctx context.Context, tenantID string, until time.Time) error
	// Throttled pauses the tenant like Pause and teaches the fleet's
	// learned budget that Graph said 429.
	Throttled(ctx context.Context, tenantID string, th ratelimit.Throttle) error
	PausedUntil(tenantID string) (time.Time, bool)
	// Wrote tells the Limiter when the call a permit let go was written
	// to Graph, so that its window counts a call written late from then.
	Wrote(p ratelimit.Permit, sent time.Time)
	// Answered tells it when the answer began to arrive, which bounds
	// how late the call may have reached Graph.
	Answered(p ratelimit.Permit, at time.Time)
	// Ended tells it when the call was over, answered or not: one never
	// answered may have reached Graph until then.
	Ended(p ratelimit.Permit, at time.Time)
}

var _ Limiter = (*ratelimit.Limiter)(nil)

// Quota decides whether a job's source is within its budget; a job that
// is not is held. *quota.Store implements it.
type Quota interface {
	Admit(ctx context.Context, source string, j *wire.Job) (quota.Admission, error)
}

var _ Quota = (*quota.Store)(nil)

// Ledger grants each key's idempotency lease; the lease
// (idempotency.Lease) carries the at-most-once protocol of the calls made
// under it, and the key stays bound to its first job's source and target
// (LedgerBinding). *idempotency.Store implements it.
type Ledger interface {
	AcquireFor(ctx context.Context, key, jobID string, b idempotency.Binding) (idempotency.Claim, error)
	Await(ctx context.Context, c idempotency.Claim) (idempotency.Claim, error)
}

var _ Ledger = (*idempotency.Store)(nil)

// Disposition says what the worker does with the job message.
type Disposition int

const (
	// Ack: the job is finished and its result is in Outcome.Result.
	Ack Disposition = iota
	// Term: the job can never succeed (rejected or out of deliveries); its
	// result is in Outcome.Result and it must not be redelivered.
	Term
	// Retry: the job is not finished; hand it back for redelivery after
	// Outcome.Delay. There is no result yet.
	Retry
)

// Outcome is what handling one delivery of a job produced.
type Outcome struct {
	Disposition Disposition
	// wire.Result is the job's result for Ack and Term.
	Result *wire.Result
	// Delay before redelivery, for Retry.
	Delay time.Duration
	// DeadLetter, when not empty, is why a copy of the job goes to the DLQ.
	DeadLetter string
	// ReplyTo is the job's own reply subject, if it named a valid one.
	ReplyTo string
	// CredentialsBroken says no token could be had: the worker should stop
	// taking jobs until one can. The job itself is fine and is retried.
	CredentialsBroken bool
	// Held says the job is held by its source's budget (Retry, after
	// Delay): Graph was not called.
	Held bool
}

// Delivery is one delivery of a job message.
type Delivery struct {
	Data []byte
	Meta wire.Meta
	// NumDelivered counts deliveries of this message, this one included.
	NumDelivered uint64
	// InProgress, if set, tells JetStream the job is still being worked on
	// so its ack deadline is extended during long waits.
	InProgress func()
}

// Handler processes jobs. Make one with New; it is safe for concurrent
// use.
type Handler struct {
	cfg Config
}

// Handle processes one delivery of a job and says what to do with it.
func (h *Handler) Handle(ctx context.Context, d Delivery) Outcome {
	started := h.cfg.Now()
	j, err := wire.Decode(d.Data, d.Meta)
	if err == nil {
		err = h.cfg.Policy.Validate(&j)
	}
	if err == nil {
		err = h.cfg.Policy.CheckReplyTo(j.ReplyTo, d.Meta.Source)
	}
	if err != nil && !wire.ValidID(j.ID) {
		// The answer needs an id that is a subject token and a message id;
		// the one the job named is not.
		j.ID = d.Meta.DerivedID()
	}
	res := wire.NewResult(&j, d.Meta, h.cfg.Worker, started)
	logCtx := h.cfg.Logger.With().Str("job_id", j.ID).Str("source", d.Meta.Source)
	if d.Meta.Traceparent != "" {
		logCtx = logCtx.Str("traceparent", d.Meta.Traceparent)
	}
	log := logCtx.Logger()
	if err != nil {
		log.Info().Str("status", string(wire.Rejected)).Str("reason", err.Error()).Msg("job rejected")
		out := h.finish(&res, wire.Rejected, err.Error(), Term, "rejected: "+err.Error())
		if wire.ValidSubject(j.ReplyTo) && h.cfg.Policy.CheckReplyTo(j.ReplyTo, d.Meta.Source) == nil {
			out.ReplyTo = j.ReplyTo
		}
		return out
	}
	log = log.With().Str("key", j.IdempotencyKey).Str("tenant_id", j.TenantID).Str("device_id", j.ManagedDeviceID).Logger()
	var out Outcome
	if h.expired(&j) {
		out = h.finish(&res, wire.Expired, fmt.Sprintf("notAfter %s passed before the job could start", j.NotAfter.Format(time.RFC3339)), Ack, "")
		out.ReplyTo = j.ReplyTo
		return out
	}
	holds, held, ok := h.admit(ctx, d, &j, &res, log)
	if !ok {
		return held
	}
	// Deliveries spent held by the source's budget are not attempts.
	delivered := d.NumDelivered - min(holds, max(d.NumDelivered, 1)-1)
	switch {
	case delivered > h.cfg.MaxDeliveries:
		msg := fmt.Sprintf("delivered %d times without finishing", delivered)
		out = h.finish(&res, wire.Failed, msg, Term, "failed: "+msg)
	default:
		var ok bool
		if out, ok = h.resolve(ctx, &j, &res, log); !ok {
			break
		}
		if j.AzureADDeviceID != "" || j.SerialNumber != "" {
			log = log.With().Str("device_id", j.ManagedDeviceID).Logger()
		}
		p := &process{h: h, cfg: &h.cfg, d: d, job: &j, res: &res, log: log}
		out = p.run(ctx)
	}
	out.ReplyTo = j.ReplyTo
	if out.Result != nil && out.Result.Status == wire.Succeeded && h.follows(&j, d.Meta.Source) {
		out.Result.Follow = true
	}
	return out
}

// follows reports whether j is to be followed once it succeeds: it asked,
// or its source follows every job (Config.FollowSources).
func (h *Handler) follows(j *wire.Job, source string) bool {
	return j.Follow || h.cfg.FollowSources[source]
}

func (h *Handler) expired(j *wire.Job) bool {
	return j.NotAfter != nil && h.cfg.Now().After(*j.NotAfter)
}

// finish completes res and wraps it in an Outcome.
func (h *Handler) finish(res *wire.Result, st wire.Status, why string, disp Disposition, deadLetter string) Outcome {
	res.Status = st
	res.Error = why
	res.FinishedAt = h.cfg.Now()
	return Outcome{Disposition: disp, Result: res, DeadLetter: deadLetter}
}

// LedgerKey is the idempotency record's key for a job: keys are scoped by
// tenant, since the same text in two tenants names two different actions.
func LedgerKey(j *wire.Job) string {
	return j.TenantID + "/" + j.IdempotencyKey
}

// replay answers a job from the stored outcome of its key.
func (h *Handler) replay(res *wire.Result, stored []byte) Outcome {
	var prev wire.Result
	if err := json.Unmarshal(stored, &prev); err != nil {
		msg := "the idempotency record of this key is unreadable; resubmit with a new idempotencyKey"
		return h.finish(res, wire.Failed, msg, Term, "failed: "+msg)
	}
	if prev.ManagedDeviceID != res.ManagedDeviceID || prev.UserID != res.UserID || prev.DetectedAppID != res.DetectedAppID {
		msg := fmt.Sprintf("idempotencyKey %q was already used by job %s for device %s; use a new key for a different device", res.IdempotencyKey, prev.JobID, prev.ManagedDeviceID)
		return h.finish(res, wire.Rejected, msg, Term, "rejected: "+msg)
	}
	res.Replayed = true
	res.Graph = prev.Graph
	res.CalledAt = prev.CalledAt
	res.Uncertain, res.UncertainReason = prev.Uncertain, prev.UncertainReason
	disp, dead := Ack, ""
	if prev.Status == wire.Failed {
		dead = "failed: " + prev.Error
	}
	return h.finish(res, prev.Status, prev.Error, disp, dead)
}

// newBackOff is the exponential backoff with jitter used between attempts.
func (h *Handler) newBackOff() *backoff.ExponentialBackOff {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = h.cfg.Backoff.Initial
	b.MaxInterval = h.cfg.Backoff.Max
	b.Multiplier = 2
	b.RandomizationFactor = 0.5
	b.MaxElapsedTime = 0 // bounded by MaxAttempts and MaxElapsed instead
	b.Reset()
	return b
}
