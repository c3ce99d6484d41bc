package writeback

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/recoverpasscode/recoverpasscode/wire"
)

// Outcome is how a delivery ended, or why it was given up.
type Outcome string

// The outcomes of a delivery. Every one but OutcomeDelivered is kept as a
// failed delivery, listed and redeliverable.
const (
	// OutcomeDelivered: the endpoint answered 2xx.
	OutcomeDelivered Outcome = "delivered"
	// OutcomeRejected: the endpoint kept answering 3xx or 4xx (a wrong
	// secret, credentials or permissions, a malformed request).
	OutcomeRejected Outcome = "rejected"
	// OutcomeGone: the endpoint answered 410 Gone; it is disabled until a
	// delivery of it is redelivered.
	OutcomeGone Outcome = "gone"
	// OutcomeExhausted: no 2xx within Config.RetryFor of retries.
	OutcomeExhausted Outcome = "exhausted"
	// OutcomeNoTicket: the result names no ticket to write to.
	OutcomeNoTicket Outcome = "no-ticket"
	// OutcomeInvalidTicket: the ticket is not a record number or issue key.
	OutcomeInvalidTicket Outcome = "invalid-ticket"
	// OutcomeNotFound: no record or issue has the ticket's number or key.
	OutcomeNotFound Outcome = "not-found"
	// OutcomeAmbiguous: more than one record has the ticket's number.
	OutcomeAmbiguous Outcome = "ambiguous"
	// OutcomeNotResult: the stored message is not a result.
	OutcomeNotResult Outcome = "not-a-result"
	// OutcomeResultExpired: a redelivery found its result no longer stored.
	OutcomeResultExpired Outcome = "result-expired"
)

// delivery is one result on its way to one endpoint.
type delivery struct {
	result wire.Result
	// body is the result as stored, the bytes a webhook receives and signs.
	body []byte
	// id is the webhook-id, <jobId>/result: the same on every attempt.
	id string
	// confirmation is set when the delivery is a followed job's
	// confirmation (body is then the confirmation as stored, id
	// <jobId>/confirmation); result then holds its job, ticket and device.
	confirmation *wire.Confirmation
}

// attempt is what one try at a delivery gave.
type attempt struct {
	// status is the HTTP status of the answer; 0 when there was none.
	status int
	// excerpt is the start of the answer's body, cleaned and redacted.
	excerpt string
	// retryAfter is the answer's Retry-After, if any.
	retryAfter time.Duration
	// err says what went wrong, for a person; nil on a 2xx.
	err error
	// timeout marks an attempt that ran out of time.
	timeout bool
	// final, when set, ends the delivery at once: no retry can help.
	final Outcome
}

// ok reports a 2xx.
func (a attempt) ok() bool { return a.err == nil && a.final == "" && a.status/100 == 2 }

// class is the attempt's label in the attempts metric.
func (a attempt) class() string {
	switch {
	case a.status != 0:
		return strconv.Itoa(a.status/100) + "xx"
	case a.timeout:
		return "timeout"
	case a.final != "":
		return "refused"
	default:
		return "error"
	}
}

// clientError reports an answer that repeating is unlikely to change: 3xx
// (redirects are not followed) and 4xx but 408, 425 and 429.
func (a attempt) clientError() bool {
	switch a.status {
	case http.StatusRequestTimeout, http.StatusTooEarly, http.StatusTooManyRequests:
		return false
	}
	return a.status >= 300 && a.status < 500
}

// maxExcerpt bounds the body excerpt kept with a failed attempt.
const maxExcerpt = 512

// maxBody bounds what is read of an answer.
const maxBody = 1 << 20

// userAgent identifies the deliverer to endpoints.
const userAgent = "recoverpasscode-writeback/1"

// newHTTPClient returns an endpoint's own client: its own connections, so
// a slow endpoint holds none another needs, and no redirects followed.
func newHTTPClient(tlsConfig *tls.Config, conns int) *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	if tlsConfig != nil {
		t.TLSClientConfig = tlsConfig.Clone()
	}
	// Deliveries in flight are bounded by Config.Concurrency; no
	// MaxConnsPerHost, whose slots a dial cancelled mid-outage could hold.
	t.MaxIdleConnsPerHost = conns
	return &http.Client{
		Transport: t,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// send makes one request and reads its answer. A 2xx answer's body is
// returned whole (up to 1 MiB); any other is summed up in the attempt.
func send(c *http.Client, req *http.Request, redact []string) ([]byte, attempt) {
	req.Header.Set("User-Agent", userAgent)
	resp, err := c.Do(req)
	if err == nil && req.Context().Err() != nil {
		// An answer that raced the timeout: net/http may hand over the one
		// a receiver wrote when it saw the connection close, and a handler
		// that returns then answers 200 without having done anything. Only
		// an answer within the timeout counts.
		resp.Body.Close()
		err = req.Context().Err()
	}
	if err != nil {
		return nil, transportAttempt(req.Context(), err, redact)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return nil, transportAttempt(req.Context(), fmt.Errorf("reading the answer to %s: %w", req.Method, err), redact)
	}
	a := attempt{status: resp.StatusCode, retryAfter: retryAfter(resp.Header.Get("Retry-After"), time.Now())}
	if a.status/100 == 2 {
		return body, a
	}
	a.excerpt = excerpt(body, redact)
	a.err = fmt.Errorf("%s answered %d %s", req.Method, resp.StatusCode, http.StatusText(resp.StatusCode))
	return body, a
}

// transportAttempt sums up a request that got no answer. A url.Error
// quotes the URL with its query, which may hold a key: only the
// underlying error is kept.
func transportAttempt(ctx context.Context, err error, redact []string) attempt {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = fmt.Errorf("%s: %w", ue.Op, ue.Err)
	}
	var ne net.Error
	timeout := errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
	if ctx.Err() != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		timeout = true
	}
	msg := redactText(err.Error(), redact)
	if timeout {
		msg = "no answer within the timeout: " + msg
	}
	return attempt{err: errors.New(msg), timeout: timeout}
}

// retryAfter reads a Retry-After header: seconds or an HTTP date.
func retryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && s > 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// excerpt is the start of an answer's body, safe to keep and show: control
// characters become spaces, secrets are redacted, and it is cut short.
func excerpt(body []byte, redact []string) string {
	// Redacted whole, so that no cut leaves part of a secret behind.
	s := redactText(string(body), redact)
	if len(s) > 4*maxExcerpt {
		s = s[:4*maxExcerpt]
	}
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == unicode.ReplacementChar {
			return ' '
		}
		return r
	}, s)
	return wire.Truncate(strings.Join(strings.Fields(s), " "), maxExcerpt)
}

// redactText replaces every secret in s.
func redactText(s string, secrets []string) string {
	for _, secret := range secrets {
		if len(secret) >= 4 {
			s = strings.ReplaceAll(s, secret, "[redacted]")
		}
	}
	return s
}
