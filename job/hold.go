package job

import (
	"context"
	"fmt"
	"time"

	"github.com/rs/zerolog"

	"github.com/recoverpasscode/recoverpasscode/wire"
)

// admit asks the source's budget whether the job may go on. It returns
// how many deliveries the job spent held (they do not count against
// MaxDeliveries), and ok; or, when the job is held or the budget cannot be
// read, the Outcome that hands it back. A job that is held, and a held job
// that goes on, is an audit event.
func (h *Handler) admit(ctx context.Context, d Delivery, j *wire.Job, res *wire.Result, log zerolog.Logger) (holds uint64, out Outcome, ok bool) {
	if h.cfg.Quota == nil {
		return 0, Outcome{}, true
	}
	a, err := h.cfg.Quota.Admit(ctx, d.Meta.Source, j)
	if err != nil {
		log.Warn().Err(err).Msg("the source's budget cannot be read; the job goes back to the queue")
		return 0, Outcome{Disposition: Retry, Delay: time.Second}, false
	}
	event := func(kind, reason string) {
		e := wire.NewAuditEvent(kind, res, h.cfg.Now())
		e.Reason = reason
		h.cfg.Observer.Held(ctx, e)
	}
	if a.Admitted {
		if a.Freed {
			reason := "the source's budget allows it again"
			if a.Released {
				reason = "released by " + a.Record.ReleasedBy
			}
			event(wire.KindReleased, reason)
			log.Info().Str("reason", reason).Int("holds", a.Holds).Msg("held job goes on")
		}
		return uint64(a.Holds), Outcome{}, true
	}
	if a.NewlyHeld {
		reason := fmt.Sprintf("source %s is over its budget of %s until %s", d.Meta.Source, a.Record.Budget, a.RetryAt.UTC().Format(time.RFC3339))
		event(wire.KindHeld, reason)
		log.Info().Str("reason", reason).Msg("job held: its source is over its budget")
	}
	delay := min(max(time.Until(a.RetryAt), 0), h.cfg.HoldRecheck)
	return 0, Outcome{Disposition: Retry, Delay: delay, Held: true}, false
}
