package job

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/rs/zerolog"

	"github.com/recoverpasscode/recoverpasscode/graph"
	"github.com/recoverpasscode/recoverpasscode/ratelimit"
	"github.com/recoverpasscode/recoverpasscode/wire"
)

// Devices finds the managed devices a job names by another property.
// *graph.Client implements it.
type Devices interface {
	FindDevices(ctx context.Context, tenantID string, l wire.Lookup) ([]string, graph.Response, error)
}

var _ Devices = (*graph.Client)(nil)

// Reads is the fleet-wide budget of Graph reads, apart from the POSTs':
// a *ratelimit.Limiter on ratelimit.ReadsApp.
type Reads interface {
	Take(ctx context.Context, tenantID string) (ratelimit.Permit, error)
	Pause(ctx context.Context, tenantID string, until time.Time) error
	// Wrote and Answered tell the budget when the read a permit let go was
	// written and answered, so that a read that arrived late (Graph
	// counts arrivals) is counted where it arrived.
	Wrote(p ratelimit.Permit, sent time.Time)
	Answered(p ratelimit.Permit, at time.Time)
	Ended(p ratelimit.Permit, at time.Time)
}

var _ Reads = (*ratelimit.Limiter)(nil)

// resolve turns the azureADDeviceId or serialNumber a job names into its
// managed device id with one Graph read through the read budget, before
// the key is claimed. It returns ok when the job may go on (it named a
// managed device, or the lookup found exactly one); otherwise the Outcome
// that answers or hands back the job.
func (h *Handler) resolve(ctx context.Context, j *wire.Job, res *wire.Result, log zerolog.Logger) (Outcome, bool) {
	l, ok := j.Lookup()
	if !ok {
		return Outcome{}, true
	}
	if h.cfg.Devices == nil || h.cfg.Reads == nil {
		msg := fmt.Sprintf("%s: this worker cannot resolve devices (no read budget configured); name the device by managedDeviceId", l.Field)
		return h.finish(res, wire.Rejected, msg, Term, "rejected: "+msg), false
	}
	// The token first, as for a POST: only the read follows the permit.
	_, _ = h.cfg.Tokens.Token(ctx, j.TenantID)
	permit, err := h.cfg.Reads.Take(ctx, j.TenantID)
	if err != nil {
		return Outcome{Disposition: Retry, Delay: time.Second}, false
	}
	ids, resp, err := h.cfg.Devices.FindDevices(ratelimit.WithTrace(ctx, h.cfg.Reads, permit), j.TenantID, l)
	h.cfg.Reads.Ended(permit, time.Now())
	if err != nil {
		return h.resolveFailed(ctx, j, res, l, resp, err, log), false
	}
	if len(ids) != 1 {
		n := len(ids)
		res.DeviceMatches = &n
		msg := fmt.Sprintf("%s %q matches no managed device in tenant %s; nothing was done", l.Field, l.Value, j.TenantID)
		if n > 1 {
			msg = fmt.Sprintf("%s %q matches %d managed devices in tenant %s; nothing was done: name the device by managedDeviceId", l.Field, l.Value, n, j.TenantID)
		}
		log.Info().Str("status", string(wire.Rejected)).Int("matches", n).Msg("device not resolved")
		return h.finish(res, wire.Rejected, msg, Term, "rejected: "+msg), false
	}
	if !wire.IsGUID(ids[0]) {
		msg := fmt.Sprintf("%s %q resolved to %q, which is not a managed device id", l.Field, l.Value, wire.Truncate(ids[0], 64))
		return h.finish(res, wire.Failed, msg, Term, "failed: "+msg), false
	}
	j.ManagedDeviceID, res.ManagedDeviceID = ids[0], ids[0]
	log.Debug().Str("device_id", ids[0]).Str("by", l.Field).Str("request_id", resp.RequestID).Msg("device resolved")
	return Outcome{}, true
}

// resolveFailed answers a resolving read Graph refused: throttled, the
// read budget is paused for the fleet and the job comes back; refused for
// good (403 without the read permission, 400), the job fails; anything
// else, it comes back.
func (h *Handler) resolveFailed(ctx context.Context, j *wire.Job, res *wire.Result, l wire.Lookup, resp graph.Response, err error, log zerolog.Logger) Outcome {
	var apiErr *graph.APIError
	switch {
	case errors.Is(err, graph.ErrThrottled):
		wait := graph.ThrottleWait(err)
		if perr := h.cfg.Reads.Pause(ctx, j.TenantID, h.cfg.Now().Add(wait)); perr != nil {
			log.Warn().Err(perr).Msg("could not share the read pause")
		}
		return Outcome{Disposition: Retry, Delay: wait + jitter(time.Second)}
	case errors.Is(err, graph.ErrUnauthorized):
		if _, rerr := h.cfg.Tokens.Refresh(ctx, j.TenantID); rerr != nil {
			return Outcome{Disposition: Retry, Delay: 5 * time.Second, CredentialsBroken: true}
		}
		return Outcome{Disposition: Retry, Delay: time.Second}
	case errors.Is(err, graph.ErrCredential):
		return Outcome{Disposition: Retry, Delay: 5 * time.Second, CredentialsBroken: true}
	case errors.Is(err, graph.ErrPermanent):
		g := &wire.GraphOutcome{Status: resp.Status, RequestID: resp.RequestID, ClientRequestID: resp.ClientRequestID}
		if errors.As(err, &apiErr) {
			g.Status, g.ErrorCode, g.ErrorMessage = apiErr.Status, apiErr.Code, wire.Truncate(apiErr.Message, 300)
		}
		res.Graph = g
		msg := fmt.Sprintf("could not resolve %s %q: %s (reading managed devices needs DeviceManagementManagedDevices.Read.All)", l.Field, l.Value, errorText(err))
		return h.finish(res, wire.Failed, msg, Term, "failed: "+msg)
	}
	if ctx.Err() == nil {
		log.Info().Err(err).Msg("resolving the device failed; the job goes back to the queue")
	}
	return Outcome{Disposition: Retry, Delay: time.Second + jitter(time.Second)}
}
