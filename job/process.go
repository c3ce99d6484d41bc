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
	"github.com/recoverpasscode/recoverpasscode/wire"
)

// process carries one valid job through its idempotency record and its
// Graph attempts.
type process struct {
	h     *Handler
	d     Delivery
	job   *wire.Job
	res   *wire.Result
	log   zerolog.Logger
	claim idempotency.Claim
}

func (p *process) run(ctx context.Context) Outcome {
	h := p.h
	key := LedgerKey(p.job)
	// The key is claimed to call Graph right away: the claim marks the
	// record calling in the same write, and the first MarkCalling below
	// takes that mark up without a round trip.
	claim, err := h.cfg.Ledger.ClaimCalling(ctx, key, p.job.ID)
	if err != nil {
		return p.handBack(ctx, time.Second, fmt.Errorf("claim idempotency key: %w", err))
	}
	if claim.State == idempotency.Busy {
		waitCtx, cancel := context.WithTimeout(ctx, h.cfg.MaxInlineWait)
		stop := p.keepDeliveryAlive(waitCtx)
		claim, err = h.cfg.Ledger.Await(waitCtx, key, claim)
		stop()
		cancel()
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
		return h.replay(p.res, claim.Outcome)
	case idempotency.Acquired:
	default:
		return p.handBack(ctx, time.Second, fmt.Errorf("unexpected claim state %v", claim.State))
	}
	p.claim = claim
	if claim.TakenOver && claim.PreviousCalling {
		p.res.Uncertain = true
		p.res.UncertainReason = fmt.Sprintf("took over the key from worker %s, which stopped after it may have called Graph", claim.PreviousOwner)
	}
	stopLease := h.cfg.Ledger.KeepAlive(ctx, &p.claim, h.cfg.KeepAliveEvery)
	defer stopLease()
	stopAck := p.keepDeliveryAlive(ctx)
	defer stopAck()
	return p.attempts(ctx)
}

// attempts calls Graph until it answers for good, the retry bounds are
// spent, or a wait is long enough to hand the job back.
func (p *process) attempts(ctx context.Context) Outcome {
	h := p.h
	bo := h.newBackOff()
	refreshed := false
	failures := 0
	target := p.job.Target()
	for {
		if h.expired(p.job) {
			p.release(ctx)
			return h.finish(p.res, wire.Expired, fmt.Sprintf("notAfter %s passed before Graph answered", p.job.NotAfter.Format(time.RFC3339)), Ack, "")
		}
		if until, paused := h.cfg.Limiter.PausedUntil(p.job.TenantID); paused {
			if wait := time.Until(until); wait > h.cfg.MaxInlineWait {
				return p.handBack(ctx, wait+jitter(time.Second), errors.New("tenant is paused by Graph throttling"))
			}
		}
		// Mark the record before taking a permit, so that nothing but the
		// call lies between the permit and Graph: the limit is on when calls
		// arrive, and a KV round trip there would blur it.
		if err := h.cfg.Ledger.MarkCalling(ctx, &p.claim); err != nil {
			return p.handBack(ctx, time.Second, fmt.Errorf("mark idempotency record: %w", err))
		}
		waited, err := h.cfg.Limiter.Wait(ctx, p.job.TenantID)
		if err != nil {
			p.unmark(ctx)
			return p.handBack(ctx, 0, fmt.Errorf("rate limit: %w", err))
		}
		h.cfg.Observer.RateLimited(p.job.TenantID, waited)
		// The lease must still be ours, as last confirmed by a write: if the
		// keep-alive could not renew it during the wait (NATS unreachable),
		// another worker may have taken the key. Renewing is a
		// compare-and-set, so a lost key is found out here, before calling.
		if time.Until(p.claim.HeldUntil()) < h.cfg.KeepAliveEvery {
			if err := h.cfg.Ledger.Renew(ctx, &p.claim); err != nil {
				return p.handBack(ctx, time.Second, fmt.Errorf("lease lapsed while waiting for the rate limit: %w", err))
			}
		}
		p.res.Attempts++
		resp, err := h.cfg.Graph.RecoverPasscode(ctx, target)
		p.recordGraph(resp, err)
		call := wire.NewAuditEvent(wire.KindGraphCall, p.res, h.cfg.Now())
		call.Form = target.Form()
		call.DurationMS = float64(resp.Duration.Microseconds()) / 1000
		h.cfg.Observer.GraphCalled(ctx, call, resp.Duration)
		p.log.Debug().Int("attempt", p.res.Attempts).Int("status", resp.Status).Str("request_id", resp.RequestID).Str("client_request_id", resp.ClientRequestID).Err(err).Msg("graph call")
		if err == nil {
			return p.complete(ctx, wire.Succeeded, "", "")
		}
		if ctx.Err() != nil {
			return p.handBack(ctx, 0, ctx.Err())
		}
		if !errors.Is(err, graph.ErrUnknownOutcome) {
			p.unmark(ctx) // Graph answered without acting
		}
		switch {
		case errors.Is(err, graph.ErrUnauthorized) && !refreshed:
			refreshed = true
			if _, rerr := h.cfg.Tokens.Refresh(ctx, p.job.TenantID); rerr != nil {
				return p.credentialsBroken(ctx, rerr)
			}
			continue
		case errors.Is(err, graph.ErrUnauthorized), errors.Is(err, graph.ErrCredential):
			return p.credentialsBroken(ctx, err)
		case errors.Is(err, graph.ErrPermanent):
			msg := errorText(err)
			return p.complete(ctx, wire.Failed, msg, "failed: "+msg)
		}
		// Throttled, transient or unknown outcome: retry within bounds.
		if errors.Is(err, graph.ErrUnknownOutcome) {
			p.res.Uncertain = true
			p.res.UncertainReason = "an earlier attempt ended without a clear answer from Graph (" + errorText(err) + "); the action may have run before the final attempt"
		}
		delay := p.retryDelay(err, bo)
		if !errors.Is(err, graph.ErrThrottled) {
			failures++ // being throttled is waiting our turn, not failing
		}
		if failures >= h.cfg.Backoff.MaxAttempts || h.cfg.Now().Add(delay).Sub(p.res.StartedAt) > h.cfg.Backoff.MaxElapsed {
			msg := fmt.Sprintf("gave up after %d attempts: %s", p.res.Attempts, errorText(err))
			p.release(ctx)
			return h.finish(p.res, wire.Failed, msg, Ack, "failed: "+msg)
		}
		if errors.Is(err, graph.ErrThrottled) || serverSaidWait(err) {
			// The server speaks for the tenant, not for this job: every
			// worker holds its calls for this tenant until then.
			until := h.cfg.Now().Add(delay)
			if perr := h.cfg.Limiter.Pause(ctx, p.job.TenantID, until); perr != nil {
				p.log.Warn().Err(perr).Msg("could not share the throttling pause")
			}
			h.cfg.Observer.Paused(p.job.TenantID, until)
			p.log.Info().Int("status", p.res.Graph.Status).Dur("pause", delay).Msg("graph asked to slow down: tenant paused")
			continue // the next Wait observes the pause
		}
		if delay > h.cfg.MaxInlineWait {
			return p.handBack(ctx, delay, err)
		}
		if !timing.Sleep(ctx, delay) {
			return p.handBack(ctx, 0, ctx.Err())
		}
	}
}

// unmark records that the call marked by MarkCalling did not take effect
// (it was refused, or never made), so a later owner of the key need not
// fear a double call. After an unknown outcome the mark must stay.
func (p *process) unmark(ctx context.Context) {
	if p.res.Uncertain {
		return
	}
	if err := p.h.cfg.Ledger.MarkAnswered(context.WithoutCancel(ctx), &p.claim); err != nil {
		p.log.Warn().Err(err).Msg("could not record that the marked Graph call did not happen")
	}
}

// retryDelay is the server's Retry-After, clamped, or the next backoff.
func (p *process) retryDelay(err error, bo *backoff.ExponentialBackOff) time.Duration {
	var apiErr *graph.APIError
	if errors.As(err, &apiErr) && apiErr.HasRetryAfter {
		return min(max(apiErr.RetryAfter, 0), p.h.cfg.Backoff.Max)
	}
	return bo.NextBackOff()
}

// serverSaidWait reports a response carrying Retry-After (a 503 or 504).
func serverSaidWait(err error) bool {
	var apiErr *graph.APIError
	return errors.As(err, &apiErr) && apiErr.Status != 0 && apiErr.HasRetryAfter
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

// complete stores the final outcome in the key's record, then answers.
func (p *process) complete(ctx context.Context, st wire.Status, why, deadLetter string) Outcome {
	out := p.h.finish(p.res, st, why, Ack, deadLetter)
	blob, err := json.Marshal(out.Result)
	if err == nil {
		err = p.record(ctx, string(st), blob)
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

// record stores the outcome in the key's record. Graph has acted, so
// giving up here lets another worker act on the key again: a failed write
// is retried with backoff (250ms doubling to 2s) for up to MaxInlineWait
// after the first failure, and the job's own cancellation (a drain that
// timed out) does not stop it. The retries go on past the lease: the write
// is a compare-and-set, so it lands only if no one took the key over
// meanwhile (during a NATS outage no one can), and stops at ErrLost.
func (p *process) record(ctx context.Context, status string, blob []byte) error {
	ctx = context.WithoutCancel(ctx)
	err := p.h.cfg.Ledger.Complete(ctx, &p.claim, status, blob)
	deadline := time.Now().Add(p.h.cfg.MaxInlineWait)
	for delay := 250 * time.Millisecond; err != nil; delay = min(2*delay, 2*time.Second) {
		if errors.Is(err, idempotency.ErrLost) || errors.Is(err, idempotency.ErrNotHeld) || time.Until(deadline) < delay {
			return err
		}
		p.log.Info().Err(err).Dur("retry_in", delay).Msg("could not store the outcome in the idempotency record yet; retrying")
		timing.Sleep(ctx, delay)
		err = p.h.cfg.Ledger.Complete(ctx, &p.claim, status, blob)
	}
	return nil
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

func (p *process) release(ctx context.Context) {
	if p.claim.State != idempotency.Acquired {
		return
	}
	// Release even when ctx is done (shutdown), bounded.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	if err := p.h.cfg.Ledger.Release(rctx, &p.claim); err != nil {
		p.log.Warn().Err(err).Msg("could not release the idempotency key; it frees when its lease ends")
	}
}

// keepDeliveryAlive extends the message's ack deadline until stopped.
func (p *process) keepDeliveryAlive(ctx context.Context) (stop func()) {
	if p.d.InProgress == nil {
		return func() {}
	}
	return timing.Every(ctx, p.h.cfg.KeepAliveEvery, func(context.Context) bool {
		p.d.InProgress()
		return true
	})
}

func jitter(d time.Duration) time.Duration {
	return time.Duration(rand.Int64N(int64(d) + 1))
}
