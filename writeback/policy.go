package writeback

import (
	"net/http"
	"time"

	"github.com/cenkalti/backoff/v4"
)

// policy decides, after each attempt, whether a delivery is done, given up
// or tried again, and when.
type policy struct {
	retryFor            time.Duration
	clientErrorAttempts int
	minBackoff          time.Duration
	maxBackoff          time.Duration
}

func newPolicy(c Config) policy {
	return policy{retryFor: c.RetryFor, clientErrorAttempts: c.ClientErrorAttempts, minBackoff: c.MinBackoff, maxBackoff: c.MaxBackoff}
}

// decision is what to do with a delivery after an attempt: done when
// outcome is set (delivered, or kept as failed), else try again after
// delay.
type decision struct {
	outcome Outcome
	delay   time.Duration
}

// decide judges attempt number n (1 for the first) of a delivery whose
// round of retries began at start.
func (p policy) decide(a attempt, n int, start, now time.Time) decision {
	switch {
	case a.ok():
		return decision{outcome: OutcomeDelivered}
	case a.final != "":
		return decision{outcome: a.final}
	case a.status == http.StatusGone:
		return decision{outcome: OutcomeGone}
	case a.clientError() && n >= p.clientErrorAttempts:
		return decision{outcome: OutcomeRejected}
	}
	left := start.Add(p.retryFor).Sub(now)
	if left <= 0 {
		return decision{outcome: OutcomeExhausted}
	}
	delay := p.backoff(n)
	if a.retryAfter > delay {
		delay = min(a.retryAfter, p.maxBackoff)
	}
	// The last attempt is made when the time is up, not skipped.
	return decision{delay: min(delay, left)}
}

// backoff is the wait after attempt n: MinBackoff doubling up to
// MaxBackoff, each randomized by ±50% so that deliveries failed together
// do not come back together.
func (p policy) backoff(n int) time.Duration {
	b := backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(p.minBackoff),
		backoff.WithMaxInterval(p.maxBackoff),
		backoff.WithMultiplier(2),
		backoff.WithRandomizationFactor(0.5),
		backoff.WithMaxElapsedTime(0),
	)
	d := p.minBackoff
	for i := 0; i < n && i < 64; i++ {
		d = b.NextBackOff()
	}
	return d
}
