// Package graph is a thin Microsoft Graph client for the Intune recoverPasscode action,
// with Entra ID credentials through MSAL Go.
//
// A [Client] makes one POST per call and classifies every failure (see [ErrThrottled]
// and its siblings) without retrying: retries, backoff and idempotency belong to the
// caller. A [Credential] supplies app-only tokens for any tenant of one app registration.
package graph

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/recoverpasscode/recoverpasscode/wire"
)

// Defaults for [Config].
const (
	DefaultBaseURL        = "https://graph.microsoft.com/v1.0"
	DefaultAttemptTimeout = 30 * time.Second
)

// TokenSource supplies bearer tokens for Graph. Implementations must be safe for
// concurrent use; [Credential] is one.
type TokenSource interface {
	// Token returns a token for tenantID ("" means the default tenant), from a cache
	// when it can.
	Token(ctx context.Context, tenantID string) (string, error)
	// Refresh bypasses the cache and fetches a new token for tenantID. Callers use it
	// once after Graph answered 401.
	Refresh(ctx context.Context, tenantID string) (string, error)
}

// Config configures a [Client]. Only Credential is required.
type Config struct {
	// BaseURL is the Graph root including the version (GRAPH_BASE_URL). It must be
	// https, or http on a loopback host. Defaults to https://graph.microsoft.com/v1.0.
	BaseURL string
	// HTTPClient sends the requests; redirects are never followed. Defaults to a client
	// with connect, TLS-handshake and idle-connection timeouts.
	HTTPClient *http.Client
	// Credential supplies the bearer tokens. Required.
	Credential TokenSource
	// AttemptTimeout bounds one Graph request, from sending it to the end of the
	// response; getting the token is bounded by ctx and the credential. Defaults to 30s.
	AttemptTimeout time.Duration
}

// Client calls Graph's recoverPasscode action. It is safe for concurrent use.
type Client struct {
	base    string
	http    *http.Client
	cred    TokenSource
	timeout time.Duration
}

// Response describes one answered call. On failure it still holds what is known, so
// the caller can record the IDs of a refused call.
type Response struct {
	// Status is the HTTP status code, 0 when no response arrived.
	Status int
	// RequestID is Graph's request-id for the call.
	RequestID string
	// ClientRequestID is the client-request-id GUID sent with the call.
	ClientRequestID string
	// Date is the server's Date header.
	Date time.Time
	// Duration is the time from sending the request to reading the response.
	Duration time.Duration
	// Sent is when the request was written to the connection; zero when it
	// was not.
	Sent time.Time
	// Form is the path form used ([wire.FormManagedDevice], [wire.FormUser] or [wire.FormDetectedApp]).
	Form string
}

// New returns a Client for cfg, or an error naming what is wrong with it.
func New(cfg Config) (*Client, error) {
	if cfg.Credential == nil {
		return nil, errors.New("graph: config: Credential is required")
	}
	base, err := parseBaseURL(cfg.BaseURL)
	if err != nil {
		return nil, err
	}
	hc := cfg.HTTPClient
	if hc == nil {
		hc = defaultHTTPClient(0)
	}
	noRedirect := *hc
	noRedirect.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	timeout := cfg.AttemptTimeout
	if timeout <= 0 {
		timeout = DefaultAttemptTimeout
	}
	return &Client{base: base, http: &noRedirect, cred: cfg.Credential, timeout: timeout}, nil
}

// parseBaseURL checks GRAPH_BASE_URL and returns it without a trailing slash.
func parseBaseURL(raw string) (string, error) {
	if raw == "" {
		return DefaultBaseURL, nil
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("graph: GRAPH_BASE_URL %q is not a URL", raw)
	}
	switch {
	case u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "":
		return "", fmt.Errorf("graph: GRAPH_BASE_URL %q must be scheme://host[/path] with no query or credentials", raw)
	case u.Scheme == "http" && !isLoopback(u.Hostname()):
		return "", fmt.Errorf("graph: GRAPH_BASE_URL %q must use https (http only on a loopback host)", raw)
	case u.Scheme != "https" && u.Scheme != "http":
		return "", fmt.Errorf("graph: GRAPH_BASE_URL %q must use https", raw)
	}
	return strings.TrimSuffix(u.String(), "/"), nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// defaultHTTPClient returns a client with transport-level timeouts; total is the whole
// request's limit (0 for none).
func defaultHTTPClient(total time.Duration) *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.DialContext = (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	t.TLSHandshakeTimeout = 10 * time.Second
	t.IdleConnTimeout = 90 * time.Second
	t.MaxIdleConnsPerHost = 32
	return &http.Client{Transport: t, Timeout: total}
}

// RecoverPasscode asks Intune to recover the passcode of the device t names. Success
// (Graph documents 204; any 2xx counts) returns a nil error. A call that Graph refused or that failed in
// transport returns an *APIError matching its class, with Response still filled with
// the status and IDs known; a token that could not be had matches ErrCredential; an
// invalid t returns a *wire.FieldError and sends nothing. A 401 is not retried here.
func (c *Client) RecoverPasscode(ctx context.Context, t wire.Target) (Response, error) {
	resp := Response{Form: t.Form()}
	path, err := t.Path()
	if err != nil {
		return resp, fmt.Errorf("graph: recover passcode: %w", err)
	}
	return c.do(ctx, http.MethodPost, t.TenantID, path, resp, "recover passcode", c.finish)
}

// do makes one call of method to pathAndQuery (escaped, relative to the
// Graph root) with the headers every call carries, and hands the answer to
// answer. A failure in transport is ErrTransient, or ErrUnknownOutcome for
// a POST that was written (it may have been acted on); op names the call
// in errors.
func (c *Client) do(ctx context.Context, method, tenantID, pathAndQuery string, resp Response, op string,
	answer func(resp Response, hr *http.Response, start time.Time, token string) (Response, error)) (Response, error) {
	token, err := c.cred.Token(ctx, tenantID)
	if err != nil {
		return resp, credentialFailure(ctx, err)
	}
	resp.ClientRequestID = uuid.NewString()

	actx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	var wrote atomic.Bool
	var sent atomic.Int64
	actx = httptrace.WithClientTrace(actx, &httptrace.ClientTrace{
		WroteRequest: func(info httptrace.WroteRequestInfo) {
			wrote.Store(info.Err == nil)
			sent.Store(time.Now().UnixNano())
		},
	})
	req, err := http.NewRequestWithContext(actx, method, c.base+pathAndQuery, http.NoBody)
	if err != nil {
		return resp, fmt.Errorf("graph: %s: %w", op, err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("client-request-id", resp.ClientRequestID)
	req.Header.Set("return-client-request-id", "true")
	req.Header.Set("User-Agent", "recoverpasscode")

	start := time.Now()
	hr, err := c.http.Do(req)
	if at := sent.Load(); at != 0 {
		resp.Sent = time.Unix(0, at)
	}
	if err != nil {
		resp.Duration = time.Since(start)
		class := ErrTransient
		if wrote.Load() && method != http.MethodGet {
			class = ErrUnknownOutcome
		}
		return resp, &APIError{ClientRequestID: resp.ClientRequestID, Err: err, class: class}
	}
	defer hr.Body.Close()
	return answer(resp, hr, start, token)
}

// finish reads the response into resp and, for a non-2xx status, into an *APIError.
func (c *Client) finish(resp Response, hr *http.Response, start time.Time, token string) (Response, error) {
	resp.Status = hr.StatusCode
	resp.RequestID = hr.Header.Get("request-id")
	resp.Date, _ = http.ParseTime(hr.Header.Get("Date"))

	body, _ := io.ReadAll(io.LimitReader(hr.Body, maxErrorBody))
	_, _ = io.Copy(io.Discard, io.LimitReader(hr.Body, maxErrorBody)) // let the connection be reused
	resp.Duration = time.Since(start)
	if hr.StatusCode >= 200 && hr.StatusCode < 300 {
		return resp, nil
	}

	apiErr := &APIError{
		Status:          hr.StatusCode,
		RequestID:       resp.RequestID,
		ClientRequestID: resp.ClientRequestID,
		Date:            resp.Date,
	}
	apiErr.RetryAfter, apiErr.HasRetryAfter = ParseRetryAfter(hr.Header.Get("Retry-After"), time.Now())
	decodeErrorBody(apiErr, body)
	if token != "" {
		apiErr.Message = strings.ReplaceAll(apiErr.Message, token, "[redacted]")
	}
	if resp.RequestID == "" {
		resp.RequestID = apiErr.RequestID
	}
	if resp.Date.IsZero() {
		resp.Date = apiErr.Date
	}
	return resp, apiErr
}

// credentialFailure makes a token failure match ErrCredential, unless it is only the
// caller's context ending, which says nothing about the credentials.
func credentialFailure(ctx context.Context, err error) error {
	switch {
	case ctx.Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)):
		return fmt.Errorf("graph: recover passcode: token: %w", err)
	case errors.Is(err, ErrCredential):
		return err // already "graph: credential unavailable: ..."
	default:
		return fmt.Errorf("%w: %w", ErrCredential, err)
	}
}
