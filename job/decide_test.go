package job

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/recoverpasscode/recoverpasscode/graph"
	"github.com/recoverpasscode/recoverpasscode/idempotency"
)

// TestDecide is the retry policy: what each class of Graph answer means for
// the job, within the default bounds.
func TestDecide(t *testing.T) {
	cfg := DefaultConfig()
	started := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	now := started.Add(time.Minute)
	const backoff = 700 * time.Millisecond // what the exponential backoff would give next
	status := func(code int) error { return &graph.APIError{Status: code, Code: "Code"} }
	retryAfter := func(code int, d time.Duration) error {
		return &graph.APIError{Status: code, RetryAfter: d, HasRetryAfter: true}
	}
	dialFailed := &graph.APIError{Err: &net.OpError{Op: "dial", Err: errors.New("connection refused")}}
	timedOut := &graph.APIError{Err: context.DeadlineExceeded}
	noToken := fmt.Errorf("%w: AADSTS7000215 invalid client secret", graph.ErrCredential)

	tests := []struct {
		name string
		err  error
		a    attempt // Now, Started and Backoff are filled in
		want decision
	}{
		{"204: done", nil, attempt{}, decision{Act: succeed, Fate: idempotency.Acted}},
		{"204 although the job was cancelled: done", nil, attempt{Canceled: true}, decision{Act: succeed, Fate: idempotency.Acted}},
		{"cancelled during the call: hand back, outcome unknown", timedOut, attempt{Canceled: true},
			decision{Act: handBack, Fate: idempotency.Unknown}},

		{"401: refresh the token, call again", status(401), attempt{}, decision{Act: refresh, Fate: idempotency.Refused}},
		{"401 after a refresh: credentials broken", status(401), attempt{Refreshed: true}, decision{Act: credentials, Fate: idempotency.Refused}},
		{"no token: credentials broken, nothing sent", noToken, attempt{}, decision{Act: credentials, Fate: idempotency.NotCalled}},

		{"404: failed for good", status(404), attempt{}, decision{Act: fail, Fate: idempotency.Refused}},
		{"403: failed for good", status(403), attempt{}, decision{Act: fail, Fate: idempotency.Refused}},
		{"501: failed for good", status(501), attempt{}, decision{Act: fail, Fate: idempotency.Refused}},

		{"429 without Retry-After: pause the tenant for the backoff, not a failure", status(429), attempt{},
			decision{Act: pause, Fate: idempotency.Refused, Delay: backoff, Until: now.Add(backoff), Backoff: true, Learn: true}},
		{"429 with Retry-After: pause the tenant as told", retryAfter(429, 30*time.Second), attempt{},
			decision{Act: pause, Fate: idempotency.Refused, Delay: 30 * time.Second, Until: now.Add(30 * time.Second), Learn: true}},
		{"429 with a Retry-After beyond Backoff.Max: capped", retryAfter(429, time.Hour), attempt{},
			decision{Act: pause, Fate: idempotency.Refused, Delay: cfg.Backoff.Max, Until: now.Add(cfg.Backoff.Max), Learn: true}},
		{"429 after MaxAttempts-1 failures: still waiting our turn", status(429), attempt{Failures: cfg.Backoff.MaxAttempts - 1},
			decision{Act: pause, Fate: idempotency.Refused, Delay: backoff, Until: now.Add(backoff), Backoff: true, Learn: true}},

		{"503: retry after the backoff, holding the job", status(503), attempt{},
			decision{Act: sleep, Fate: idempotency.Refused, Delay: backoff, Backoff: true, Failure: true}},
		{"503 with Retry-After: the tenant is paused", retryAfter(503, 5*time.Second), attempt{},
			decision{Act: pause, Fate: idempotency.Refused, Delay: 5 * time.Second, Until: now.Add(5 * time.Second), Failure: true}},
		{"connection refused: retry, nothing sent", dialFailed, attempt{},
			decision{Act: sleep, Fate: idempotency.Refused, Delay: backoff, Backoff: true, Failure: true}},

		{"500: retry, uncertain", status(500), attempt{},
			decision{Act: sleep, Fate: idempotency.Unknown, Delay: backoff, Backoff: true, Failure: true, Uncertain: true}},
		{"timeout after sending: retry, uncertain", timedOut, attempt{},
			decision{Act: sleep, Fate: idempotency.Unknown, Delay: backoff, Backoff: true, Failure: true, Uncertain: true}},
		{"504 with Retry-After: pause, uncertain", retryAfter(504, 2*time.Second), attempt{},
			decision{Act: pause, Fate: idempotency.Unknown, Delay: 2 * time.Second, Until: now.Add(2 * time.Second), Failure: true, Uncertain: true}},

		{"a backoff longer than MaxInlineWait: hand back for it", status(503), attempt{Backoff: cfg.MaxInlineWait + time.Second},
			decision{Act: handBack, Fate: idempotency.Refused, Delay: cfg.MaxInlineWait + time.Second, Backoff: true, Failure: true}},
		{"the MaxAttempts-th failure: give up", status(503), attempt{Failures: cfg.Backoff.MaxAttempts - 1},
			decision{Act: giveUp, Fate: idempotency.Refused, Delay: backoff, Backoff: true, Failure: true}},
		{"the MaxAttempts-th failure, uncertain: give up, uncertain", status(502), attempt{Failures: cfg.Backoff.MaxAttempts - 1},
			decision{Act: giveUp, Fate: idempotency.Unknown, Delay: backoff, Backoff: true, Failure: true, Uncertain: true}},
		{"a retry past MaxElapsed: give up", status(503), attempt{Started: now.Add(-cfg.Backoff.MaxElapsed + backoff/2)},
			decision{Act: giveUp, Fate: idempotency.Refused, Delay: backoff, Backoff: true, Failure: true}},
		{"a pause past MaxElapsed: give up", retryAfter(429, 30*time.Second), attempt{Started: now.Add(-cfg.Backoff.MaxElapsed)},
			decision{Act: giveUp, Fate: idempotency.Refused, Delay: 30 * time.Second, Learn: true}},
		{"an error of no class: retried as a failure", errors.New("boom"), attempt{},
			decision{Act: sleep, Fate: idempotency.Refused, Delay: backoff, Backoff: true, Failure: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := tt.a
			a.Now = now
			if a.Started.IsZero() {
				a.Started = started
			}
			if a.Backoff == 0 {
				a.Backoff = backoff
			}
			if got := decide(tt.err, a, &cfg); got != tt.want {
				t.Errorf("decide(%v)\n got %+v\nwant %+v", tt.err, got, tt.want)
			}
		})
	}
}
