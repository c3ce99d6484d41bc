package job

import (
	"errors"
	"fmt"
	"time"

	"github.com/recoverpasscode/recoverpasscode/graph"
	"github.com/recoverpasscode/recoverpasscode/idempotency"
	"github.com/recoverpasscode/recoverpasscode/wire"
)

// This file is the retry policy: what one Graph answer means for the job.
// decide is a pure function of the answer and of what came before, so the
// whole policy is the table in decide_test.go; process.go only carries the
// decision out.

// action is what the handler does next with a job after a Graph call.
type action int

const (
	// succeed: Graph acted; store and answer the success.
	succeed action = iota + 1
	// fail: Graph refused for good (a 4xx other than 401 and 429); store
	// and answer the failure.
	fail
	// refresh: Graph refused the token; refresh it and call again at once,
	// once per delivery.
	refresh
	// credentials: no usable token; hand the job back and stop taking work
	// until one can be had.
	credentials
	// handBack: give the job back for redelivery after Delay (the job was
	// cancelled, or the wait is too long to spend holding it).
	handBack
	// giveUp: the retry bounds are spent; answer failed, without storing it
	// in the key's record (a later job with the key may try again).
	giveUp
	// pause: Graph asked the tenant to slow down; pause it for every worker
	// until Until, then call again.
	pause
	// sleep: wait Delay holding the job, then call again.
	sleep
)

// attempt is what decide knows besides the Graph answer.
type attempt struct {
	// Now is when the answer came; Started when the delivery started.
	Now, Started time.Time
	// Failures counts the failed calls of this delivery before this one
	// (429s do not count).
	Failures int
	// Refreshed says the token was refreshed once already.
	Refreshed bool
	// Canceled says the job's context ended during the call.
	Canceled bool
	// Backoff is the delay the exponential backoff would give next; decide
	// uses it when the server named no Retry-After (decision.Backoff).
	Backoff time.Duration
}

// decision is what decide made of a Graph answer.
type decision struct {
	Act action
	// Fate is what became of the call, for the key's record.
	Fate idempotency.Fate
	// Delay is the wait before the next call (sleep, pause, handBack).
	Delay time.Duration
	// Until is when the tenant's pause ends (pause).
	Until time.Time
	// Failure says the call counts against Backoff.MaxAttempts.
	Failure bool
	// Backoff says Delay came from attempt.Backoff, so the caller advances
	// its backoff.
	Backoff bool
	// Uncertain says Graph may have acted without saying so: the result
	// must be marked uncertain whatever comes next.
	Uncertain bool
	// Learn says the answer was a 429: the tenant's budget spoke, and the
	// fleet's learned rate learns from it (ratelimit.Limiter.Throttled).
	Learn bool
}

// decide says what the Graph answer err (nil: the 204) means for the job,
// under the retry bounds of cfg.
func decide(err error, a attempt, cfg *Config) decision {
	switch {
	case err == nil:
		return decision{Act: succeed, Fate: idempotency.Acted}
	case a.Canceled:
		// The call was cut short: Graph may have acted.
		return decision{Act: handBack, Fate: idempotency.Unknown}
	case errors.Is(err, graph.ErrUnauthorized) && !a.Refreshed:
		return decision{Act: refresh, Fate: idempotency.Refused}
	case errors.Is(err, graph.ErrUnauthorized):
		return decision{Act: credentials, Fate: idempotency.Refused}
	case errors.Is(err, graph.ErrCredential):
		return decision{Act: credentials, Fate: idempotency.NotCalled}
	case errors.Is(err, graph.ErrPermanent):
		return decision{Act: fail, Fate: idempotency.Refused}
	}
	// Throttled, transient or unknown outcome: retry within bounds.
	d := decision{Fate: idempotency.Refused, Delay: a.Backoff, Backoff: true}
	if errors.Is(err, graph.ErrUnknownOutcome) {
		d.Fate, d.Uncertain = idempotency.Unknown, true
	}
	retryAfter, hasRetryAfter := graph.RetryAfter(err)
	if hasRetryAfter {
		d.Delay, d.Backoff = min(retryAfter, cfg.Backoff.Max), false
	}
	serverSaid := hasRetryAfter && responded(err)
	throttled := errors.Is(err, graph.ErrThrottled)
	d.Failure = !throttled // being throttled is waiting our turn, not failing
	d.Learn = throttled
	failures := a.Failures
	if d.Failure {
		failures++
	}
	switch {
	case failures >= cfg.Backoff.MaxAttempts || a.Now.Add(d.Delay).Sub(a.Started) > cfg.Backoff.MaxElapsed:
		d.Act = giveUp
	case throttled || serverSaid:
		// The server speaks for the tenant, not for this job: every worker
		// holds its calls for this tenant until then.
		d.Act, d.Until = pause, a.Now.Add(d.Delay)
	case d.Delay > cfg.MaxInlineWait:
		d.Act = handBack
	default:
		d.Act = sleep
	}
	return d
}

// responded reports whether err is Graph's answer rather than a call that
// got none.
func responded(err error) bool {
	var apiErr *graph.APIError
	return errors.As(err, &apiErr) && apiErr.Status != 0
}

// errorText is the person-readable text of a Graph error.
func errorText(err error) string {
	var apiErr *graph.APIError
	if errors.As(err, &apiErr) && apiErr.Status != 0 {
		if apiErr.Code != "" {
			return fmt.Sprintf("graph answered %d %s: %s", apiErr.Status, apiErr.Code, wire.Truncate(apiErr.Message, 300))
		}
		return fmt.Sprintf("graph answered %d", apiErr.Status)
	}
	return wire.Truncate(err.Error(), 300)
}
