package gateway

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/recoverpasscode/recoverpasscode/quota"
)

// budgetBackoff is how long the gateway stops reading the source budgets
// after a read failed while NATS was connected (a read denied by an older
// NATS user, which only times out; a window the workers cannot read
// either): jobs are accepted meanwhile, and the workers hold those over
// a budget, as they hold every job that races past the door.
const budgetBackoff = 30 * time.Second

// statusHeld is the state of a job the workers hold: its source is over
// its budget (package quota).
const statusHeld = "held"

// overBudget returns the 429 problem when source is over its budget now,
// else nil. The budget is the workers' (RECOVER_SOURCE_LIMITS, which the
// gateway does not read): the window of the source in the limits bucket,
// judged by the rate the workers wrote into it (quota.Store.Room), and
// nothing is taken from it. A source whose window the workers have not
// written, or without a rate in it, has no budget known: nil. So is one
// whose window cannot be read now: the door's look is a courtesy to the
// caller, and the workers still enforce the budget.
//
// The gateway reads the window on its own clock, not the server's (it
// may not write the probe key package clock needs): a clock off by d lets
// a job in up to d before the workers' window has room, and the workers
// then hold it for up to d, or refuses one up to d too long. Against
// windows of minutes or hours, an NTP-kept clock's error does not show.
func (s *Server) overBudget(ctx context.Context, source string) *problemError {
	ctx, budgets, done := s.budgets(ctx)
	if budgets == nil {
		return nil
	}
	ok, retryAt, rate, err := budgets.Room(ctx, source)
	done(err)
	if err != nil || ok {
		return nil
	}
	secs := max(1, int((time.Until(retryAt)+time.Second-1)/time.Second))
	return newProblem(ProblemOverBudget, http.StatusTooManyRequests,
		"source %s is over its budget of %s; retry after %d s; nothing was accepted: send the same request again then",
		source, rate, secs).withRetryAfter(time.Duration(secs) * time.Second)
}

// heldJob returns when the workers will look at a held job again, and
// whether they hold it (an operator's release makes it not held).
func (s *Server) heldJob(ctx context.Context, source, id string) (time.Time, bool) {
	ctx, budgets, done := s.budgets(ctx)
	if budgets == nil {
		return time.Time{}, false
	}
	h, held, err := budgets.HeldJob(ctx, source, id)
	done(err)
	return h.Until, held && err == nil
}

// budgets returns the store on the limits bucket and a context bounded by
// the request timeout to read it in, and done, to call with the read's
// error; a nil store when the bucket cannot be read now (no worker has
// created it, NATS is down, a read failed within budgetBackoff).
func (s *Server) budgets(parent context.Context) (context.Context, *quota.Store, func(error)) {
	if until := s.budgetPause.Load(); until != 0 && time.Now().UnixNano() < until {
		return nil, nil, nil
	}
	ctx, cancel := context.WithTimeout(parent, s.cfg.Timeout)
	done := func(err error) {
		cancel()
		if err == nil || parent.Err() != nil || errors.Is(err, errNotSetUp) || s.store.connected() != nil {
			return // fine; the caller left; no worker has started yet; NATS is down and the request fails elsewhere
		}
		s.budgetPause.Store(time.Now().Add(budgetBackoff).UnixNano())
		s.log.Warn().Err(err).Dur("for", budgetBackoff).
			Msg("cannot read the source budgets in the limits bucket (does the gateway's NATS user have the reads of gateway.NATSPermissions?): accepting jobs without looking meanwhile; the workers hold those over a budget")
	}
	budgets, err := s.store.budgetStore(ctx)
	if err != nil {
		done(err)
		return nil, nil, nil
	}
	return ctx, budgets, done
}
