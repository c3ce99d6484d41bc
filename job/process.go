package job

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/rs/zerolog"

	"github.com/recoverpasscode/recoverpasscode/graph"
	"github.com/recoverpasscode/recoverpasscode/idempotency"
	"github.com/recoverpasscode/recoverpasscode/internal/timing"
	"github.com/recoverpasscode/recoverpasscode/ratelimit"
	"github.com/recoverpasscode/recoverpasscode/wire"
)

// process carries one valid job through its key's lease and its Graph
// attempts, doing what decide says after each.
type process struct {
	h     *Handler
	cfg   *Config
	d     Delivery
	job   *wire.Job
	res   *wire.Result
	log   zerolog.Logger
	lease *idempotency.Lease
}

func (p *process) run(ctx context.Context) Outcome {
	cfg := p.cfg
	key := LedgerKey(p.job)
	claim, err := cfg.Ledger.AcquireFor(ctx, key, p.job.ID, LedgerBinding(p.job, p.d.Meta.Source))
	if errors.Is(err, idempotency.ErrBound) {
		return p.h.rejectBound(p.job, p.res, err, p.log)
	}
	if err != nil {
		return p.handBack(ctx, time.Second, fmt.Errorf("claim idempotency key: %w", err))
	}
	if claim.State == idempotency.Busy {
		waitCtx, cancel := context.WithTimeout(ctx, cfg.MaxInlineWait)
		stop := p.keepDeliveryAlive(waitCtx)
		claim, err = cfg.Ledger.Await(waitCtx, claim)
		stop()
		cancel()
		if errors.Is(err, idempotency.ErrBound) {
			return p.h.rejectBound(p.job, p.res, err, p.log)
		}
		if err != nil || claim.State == idempotency.Busy {
			// Another worker still holds the key: come back when its lease
			// ends rather than hold this slot.
			delay := time.Until(claim.LeaseUntil)
			if ctx.Err() == nil && err != nil && !errors.Is(err, context.DeadlineExceeded) {
				p.log.Warn().Err(err).Msg("waiting for the key's owner failed")
			}
			return Outcome{Disposition: Retry, Delay: max(delay, time.Second)}
		}
	}
	switch claim.State {
	case idempotency.Done:
		return p.h.replay(p.res, claim.Outcome)
	case idempotency.Acquired:
	default:
		return p.handBack(ctx, time.Second, fmt.Errorf("unexpected claim state %v", claim.State))
	}
	p.lease = claim.Lease
	if claim.TakenOver && claim.PreviousCalling {
		p.res.Uncertain = true
		p.res.UncertainReason = fmt.Sprintf("took over the key from worker %s, which stopped after it may have called Graph", claim.PreviousOwner)
	}
	stopLease := p.lease.KeepAlive(ctx, cfg.KeepAliveEvery)
	defer stopLease()
	stopAck := p.keepDeliveryAlive(ctx)
	defer stopAck()
	return p.attempts(ctx)
}

// attempts calls Graph under the lease until decide says the job is
// answered, handed back or given up.
func (p *process) attempts(ctx context.Context) Outcome {
	cfg := p.cfg
	bo := p.h.newBackOff()
	st := attempt{Started: p.res.StartedAt}
	for {
		if p.h.expired(p.job) {
			p.release(ctx)
			return p.h.finish(p.res, wire.Expired, fmt.Sprintf("notAfter %s passed before Graph answered", p.job.NotAfter.Format(time.RFC3339)), Ack, "")
		}
		if until, paused := cfg.Limiter.PausedUntil(p.job.TenantID); paused {
			if wait := time.Until(until); wait > cfg.MaxInlineWait {
				return p.handBack(ctx, wait+jitter(time.Second), errors.New("tenant is paused by Graph throttling"))
			}
		}
		d, gerr, started, limitErr, err := p.call(ctx, st, bo)
		switch {
		case limitErr != nil:
			return p.handBack(ctx, 0, fmt.Errorf("rate limit: %w", limitErr))
		case err != nil:
			return p.handBack(ctx, time.Second, err)
		}
		if d.Uncertain {
			p.res.Uncertain = true
			p.res.UncertainReason = "an earlier attempt ended without a clear answer from Graph (" + errorText(gerr) + "); the action may have run before the final attempt"
		}
		if d.Failure {
			st.Failures++
		}
		switch d.Act {
		case succeed:
			p.res.CalledAt = started
			return p.complete(ctx, wire.Succeeded, "", "")
		case fail:
			msg := errorText(gerr)
			return p.complete(ctx, wire.Failed, msg, "failed: "+msg)
		case refresh:
			st.Refreshed = true
			if _, rerr := cfg.Tokens.Refresh(ctx, p.job.TenantID); rerr != nil {
				return p.credentialsBroken(ctx, rerr)
			}
		case credentials:
			return p.credentialsBroken(ctx, gerr)
		case giveUp:
			msg := fmt.Sprintf("gave up after %d attempts: %s", p.res.Attempts, errorText(gerr))
			p.release(ctx)
			return p.h.finish(p.res, wire.Failed, msg, Ack, "failed: "+msg)
		case pause:
			if perr := p.pause(ctx, d, gerr, started); perr != nil {
				p.log.Warn().Err(perr).Msg("could not share the throttling pause")
			}
			cfg.Observer.Paused(p.job.TenantID, d.Until)
			p.log.Info().Int("status", p.res.Graph.Status).Dur("pause", d.Delay).Msg("graph asked to slow down: tenant paused")
			// The next Wait observes the pause.
		case handBack:
			why := gerr
			if ctx.Err() != nil {
				why = ctx.Err()
			}
			return p.handBack(ctx, d.Delay, why)
		case sleep:
			if !timing.Sleep(ctx, d.Delay) {
				return p.handBack(ctx, 0, ctx.Err())
			}
		}
	}
}

// pause shares the pause decide asked for with every worker; a 429 also
// teaches the fleet's learned budget, which needs to know when the call
// was let go (started) and what the server said.
func (p *process) pause(ctx context.Context, d decision, gerr error, started time.Time) error {
	if !d.Learn {
		return p.cfg.Limiter.Pause(ctx, p.job.TenantID, d.Until)
	}
	th := ratelimit.Throttle{Started: started, Until: d.Until}
	th.RetryAfter, th.HasRetryAfter = graph.RetryAfter(gerr)
	return p.cfg.Limiter.Throttled(ctx, p.job.TenantID, th)
}

// call makes one Graph call under the lease, after the shared rate limit,
// and decides what its answer means. It returns the rate limiter's error,
// or the lease's (the call was not made), or the decision, Graph's error
// and when the rate limit let the call go.
func (p *process) call(ctx context.Context, st attempt, bo *backoff.ExponentialBackOff) (d decision, gerr error, started time.Time, limitErr, err error) {
	cfg := p.cfg
	target := p.job.Target()
	// The lease marks the record, and the token is had, before the permit
	// is taken, so that little but the call lies between the permit and
	// Graph: the limit is on when calls arrive, and a KV or Entra round
	// trip there would let a call arrive after its permit's window. A
	// token that cannot be had here fails the call itself, which decide
	// answers; the wait does not need to. What still lies in between (a
	// new TLS connection, a starved CPU) the Limiter learns of from the
	// moment the request is written.
	var permit ratelimit.Permit
	wait := func(ctx context.Context) error {
		_, _ = cfg.Tokens.Token(ctx, p.job.TenantID)
		taken, err := cfg.Limiter.Take(ctx, p.job.TenantID)
		if err != nil {
			limitErr = err
			return err
		}
		permit = taken
		started = time.Now()
		cfg.Observer.RateLimited(p.job.TenantID, permit.Waited)
		return nil
	}
	var resp graph.Response
	_, err = p.lease.Call(ctx, wait, func(ctx context.Context) idempotency.Fate {
		p.res.Attempts++
		ctx = ratelimit.WithTrace(ctx, cfg.Limiter, permit)
		resp, gerr = cfg.Graph.RecoverPasscode(ctx, target)
		cfg.Limiter.Ended(permit, time.Now())
		// decide draws from a copy of the backoff; the draw counts only if
		// the decision used it.
		next := *bo
		st.Now, st.Canceled, st.Backoff = cfg.Now(), ctx.Err() != nil, next.NextBackOff()
		d = decide(gerr, st, cfg)
		if d.Backoff {
			*bo = next
		}
		return d.Fate
	})
	if limitErr != nil || err != nil {
		return decision{}, nil, started, limitErr, err
	}
	p.recordGraph(resp, gerr)
	call := wire.NewAuditEvent(wire.KindGraphCall, p.res, cfg.Now())
	call.Form = target.Form()
	call.DurationMS = float64(resp.Duration.Microseconds()) / 1000
	cfg.Observer.GraphCalled(ctx, call, resp.Duration)
	p.log.Debug().Int("attempt", p.res.Attempts).Int("status", resp.Status).Str("request_id", resp.RequestID).Str("client_request_id", resp.ClientRequestID).Err(gerr).Msg("graph call")
	return d, gerr, started, nil, nil
}

func (p *process) recordGraph(resp graph.Response, err error) {
	g := &wire.GraphOutcome{Status: resp.Status, RequestID: resp.RequestID, ClientRequestID: resp.ClientRequestID}
	var apiErr *graph.APIError
	if errors.As(err, &apiErr) {
		g.ErrorCode = apiErr.Code
		g.ErrorMessage = wire.Truncate(apiErr.Message, 300)
		if g.Status == 0 {
			g.Status = apiErr.Status
		}
	}
	p.res.Graph = g
}

// complete stores the final outcome in the key's record (the lease retries
// a failed write), then answers.
func (p *process) complete(ctx context.Context, st wire.Status, why, deadLetter string) Outcome {
	out := p.h.finish(p.res, st, why, Ack, deadLetter)
	blob, err := json.Marshal(out.Result)
	if err == nil {
		err = p.lease.Complete(ctx, string(st), blob)
	}
	if err != nil && !out.Result.Uncertain {
		// The key's record does not hold this outcome (another worker took
		// the key over while the call ran, or NATS was unreachable): a
		// later owner may call Graph again, and either result may be the
		// one stored for this job.
		out.Result.Uncertain = true
		out.Result.UncertainReason = "the outcome could not be recorded for the idempotency key (" + wire.Truncate(err.Error(), 200) + "); another worker may act on the key again"
	}
	if err != nil {
		p.log.Warn().Err(err).Msg("could not store the outcome in the idempotency record")
	}
	return out
}

// handBack gives the job back for redelivery after delay, releasing the key.
func (p *process) handBack(ctx context.Context, delay time.Duration, why error) Outcome {
	if !errors.Is(why, context.Canceled) {
		p.log.Info().Err(why).Dur("delay", delay).Msg("job handed back")
	}
	p.release(ctx)
	return Outcome{Disposition: Retry, Delay: delay}
}

func (p *process) credentialsBroken(ctx context.Context, err error) Outcome {
	p.log.Error().Err(err).Msg("no usable token: the job goes back to the queue")
	p.release(ctx)
	return Outcome{Disposition: Retry, Delay: 5 * time.Second, CredentialsBroken: true}
}

// release gives the key back, even when ctx is done (the lease bounds it).
func (p *process) release(ctx context.Context) {
	if p.lease == nil {
		return
	}
	if err := p.lease.Release(ctx); err != nil {
		p.log.Warn().Err(err).Msg("could not release the idempotency key; it frees when its lease ends")
	}
}

// keepDeliveryAlive extends the message's ack deadline until stopped.
func (p *process) keepDeliveryAlive(ctx context.Context) (stop func()) {
	if p.d.InProgress == nil {
		return func() {}
	}
	return timing.Every(ctx, p.cfg.KeepAliveEvery, func(context.Context) bool {
		p.d.InProgress()
		return true
	})
}

func jitter(d time.Duration) time.Duration {
	return time.Duration(rand.Int64N(int64(d) + 1))
}
