package graph

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/recoverpasscode/recoverpasscode/wire"
)

// The classes of failure. Every error that RecoverPasscode returns for a valid target
// matches exactly one of them with errors.Is, unless ctx ended while a token was being
// fetched (then it wraps only ctx's error). Callers branch on the class, never on text.
var (
	// ErrThrottled is a 429: wait (APIError.RetryAfter when given) and try again.
	ErrThrottled = errors.New("graph: throttled")
	// ErrTransient is a 503, a 408, or a connection that failed before the request was
	// written: the action did not happen and is safe to retry.
	ErrTransient = errors.New("graph: transient failure")
	// ErrUnknownOutcome is a 500, 502 or 504 (or another 5xx), or a timeout or reset
	// after the request was sent: the action may have happened.
	ErrUnknownOutcome = errors.New("graph: unknown outcome")
	// ErrPermanent is any other 4xx (400, 403, 404, 405, 409, ...), a 501 or 505, or a
	// redirect: retrying will not help.
	ErrPermanent = errors.New("graph: permanent failure")
	// ErrUnauthorized is a 401 from Graph: the token was refused. The client does not
	// retry; the caller may refresh the token once and try again.
	ErrUnauthorized = errors.New("graph: unauthorized")
	// ErrCredential means no token could be had (an Entra ID or MSAL failure): the job is
	// fine, the worker's credentials are not.
	ErrCredential = errors.New("graph: credential unavailable")
)

// Limits on what is read from and kept of an error response.
const (
	maxErrorBody    = 64 << 10
	maxErrorMessage = 1024
	maxRetryAfter   = time.Hour
	minThrottleWait = time.Second
)

// APIError is a failed recoverPasscode call: an HTTP status other than 2xx, or a
// transport failure (Status 0, Err set). errors.Is matches its class (ErrThrottled,
// ErrTransient, ErrUnknownOutcome, ErrPermanent, ErrUnauthorized) and, through Unwrap,
// the transport error (e.g. context.DeadlineExceeded).
type APIError struct {
	// Status is the HTTP status code, or 0 when no response arrived.
	Status int
	// Code is Graph's error.code (e.g. "TooManyRequests"); empty for a non-JSON body.
	Code string
	// Message is Graph's error.message, or a short excerpt of a non-JSON body, at most
	// 1 KiB. It is for people: never branch on it.
	Message string
	// RequestID is the response's request-id (header, else error.innerError).
	RequestID string
	// ClientRequestID is the client-request-id sent with the request.
	ClientRequestID string
	// Date is the server's time of the response (Date header, else innerError.date).
	Date time.Time
	// RetryAfter is the wait the server asked for, clamped to [0, 1h]; valid only when
	// HasRetryAfter is set.
	RetryAfter time.Duration
	// HasRetryAfter reports whether the response carried a usable Retry-After header.
	HasRetryAfter bool
	// Err is the underlying transport error, if any.
	Err error

	// class is set by the client for transport failures, where only it knows whether
	// the request was written; nil means derive the class from Status and Err.
	class error
}

// Error describes the failure without any credential: status, code, message and the
// request IDs to quote to Microsoft support.
func (e *APIError) Error() string {
	var b strings.Builder
	if e.Status == 0 {
		fmt.Fprintf(&b, "graph: %s: %v", classWord(e.Class()), e.Err)
	} else {
		fmt.Fprintf(&b, "graph: status %d", e.Status)
		if e.Code != "" {
			fmt.Fprintf(&b, " %s", e.Code)
		}
		if e.Message != "" {
			fmt.Fprintf(&b, ": %s", e.Message)
		}
	}
	if e.HasRetryAfter {
		fmt.Fprintf(&b, " (retry after %s)", e.RetryAfter)
	}
	if e.RequestID != "" || e.ClientRequestID != "" {
		fmt.Fprintf(&b, " [request-id %s, client-request-id %s]", e.RequestID, e.ClientRequestID)
	}
	return b.String()
}

// Class returns the sentinel that e matches: ErrThrottled, ErrTransient,
// ErrUnknownOutcome, ErrPermanent or ErrUnauthorized. Useful as a metric label.
func (e *APIError) Class() error {
	if e.class != nil {
		return e.class
	}
	if e.Status != 0 {
		return statusClass(e.Status)
	}
	if isDialError(e.Err) {
		return ErrTransient
	}
	return ErrUnknownOutcome
}

// Is reports whether target is e's class.
func (e *APIError) Is(target error) bool {
	return target == e.Class()
}

// Unwrap returns the transport error, if any.
func (e *APIError) Unwrap() error {
	return e.Err
}

// RetryAfter returns the wait that err's response asked for with Retry-After (never
// negative) and whether it asked for one. It finds an *APIError through wrapping; any
// other error asks for nothing.
func RetryAfter(err error) (time.Duration, bool) {
	var apiErr *APIError
	if !errors.As(err, &apiErr) || !apiErr.HasRetryAfter {
		return 0, false
	}
	return max(apiErr.RetryAfter, 0), true
}

// ThrottleWait is how long a throttled call asks its tenant's callers to hold off: the
// Retry-After, but at least a second, also when there was none.
func ThrottleWait(err error) time.Duration {
	wait, _ := RetryAfter(err)
	return max(wait, minThrottleWait)
}

// statusClass maps an HTTP status to its class. Graph documents 500, 502 and 504 as
// leaving the outcome unknown and 503 as "try again"; a 408 means the server gave up
// before it had the request, so it too is safe to retry.
func statusClass(status int) error {
	switch {
	case status == http.StatusUnauthorized:
		return ErrUnauthorized
	case status == http.StatusTooManyRequests:
		return ErrThrottled
	case status == http.StatusServiceUnavailable, status == http.StatusRequestTimeout:
		return ErrTransient
	case status == http.StatusNotImplemented, status == http.StatusHTTPVersionNotSupported:
		return ErrPermanent
	case status >= 500:
		return ErrUnknownOutcome
	default:
		return ErrPermanent
	}
}

func classWord(class error) string {
	switch class {
	case ErrTransient:
		return "transport failure before the request was sent"
	case ErrUnknownOutcome:
		return "transport failure after the request was sent (outcome unknown)"
	default:
		return "transport failure"
	}
}

// isDialError reports whether err is a failure to connect, which means nothing was sent.
func isDialError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// ParseRetryAfter reads a Retry-After header value: delta-seconds or an HTTP-date
// (relative to now). A wait in the past or a negative number gives 0; a wait beyond one
// hour is clamped to one hour; an empty or malformed value reports false.
func ParseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if isInteger(v) {
		secs, err := strconv.ParseInt(v, 10, 64)
		if err != nil { // out of int64 range: the sign says which way
			if v[0] == '-' {
				return 0, true
			}
			return maxRetryAfter, true
		}
		return clampRetryAfter(secs), true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	d := t.Sub(now)
	switch {
	case d < 0:
		return 0, true
	case d > maxRetryAfter:
		return maxRetryAfter, true
	}
	return d, true
}

func isInteger(v string) bool {
	digits := strings.TrimPrefix(v, "-")
	if digits == "" {
		return false
	}
	for i := 0; i < len(digits); i++ {
		if digits[i] < '0' || digits[i] > '9' {
			return false
		}
	}
	return true
}

func clampRetryAfter(secs int64) time.Duration {
	switch {
	case secs <= 0:
		return 0
	case secs >= int64(maxRetryAfter/time.Second):
		return maxRetryAfter
	}
	return time.Duration(secs) * time.Second
}

// errorBody is Graph's error document.
type errorBody struct {
	Error struct {
		Code       string `json:"code"`
		Message    string `json:"message"`
		InnerError struct {
			RequestID       string `json:"request-id"`
			ClientRequestID string `json:"client-request-id"`
			Date            string `json:"date"`
		} `json:"innerError"`
	} `json:"error"`
}

// decodeErrorBody fills e's Code, Message and, where the headers left them empty, its
// RequestID, ClientRequestID and Date from body. A body that is not Graph's JSON still
// yields a message: a printable excerpt of it.
func decodeErrorBody(e *APIError, body []byte) {
	var doc errorBody
	if err := json.Unmarshal(body, &doc); err != nil || doc.Error.Code == "" && doc.Error.Message == "" {
		e.Message = excerpt(body)
		return
	}
	e.Code = wire.Truncate(printable(doc.Error.Code), maxShownValue)
	e.Message = wire.Truncate(printable(doc.Error.Message), maxErrorMessage)
	inner := doc.Error.InnerError
	if e.RequestID == "" {
		e.RequestID = wire.Truncate(printable(inner.RequestID), maxShownValue)
	}
	if e.ClientRequestID == "" {
		e.ClientRequestID = wire.Truncate(printable(inner.ClientRequestID), maxShownValue)
	}
	if e.Date.IsZero() {
		e.Date = parseInnerDate(inner.Date)
	}
}

// parseInnerDate reads innerError.date, which Graph writes without a zone (UTC).
func parseInnerDate(s string) time.Time {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999"} {
		if t, err := time.ParseInLocation(layout, s, time.UTC); err == nil {
			return t
		}
	}
	return time.Time{}
}

// excerpt returns a one-line printable prefix of a non-JSON body, or "".
func excerpt(body []byte) string {
	s := strings.Join(strings.Fields(printable(string(body))), " ")
	return wire.Truncate(s, 256)
}

// printable replaces control characters and invalid UTF-8 so a message is safe to log.
func printable(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || r == 0xfffd || (r >= 0x80 && r < 0xa0) {
			return ' '
		}
		return r
	}, strings.ToValidUTF8(s, " "))
}

// maxShownValue bounds how much of an input an error message quotes.
const maxShownValue = 64
