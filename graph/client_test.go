package graph_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/recoverpasscode/recoverpasscode/graph"
	"github.com/recoverpasscode/recoverpasscode/wire"
)

const testToken = "eyJ0eXAi.test-access-token.sig"

// seenRequest is what the fake Graph saw.
type seenRequest struct {
	Method, EscapedPath, RawQuery string
	Header                        http.Header
	Body                          []byte
	ContentLength                 int64
	TransferEncoding              []string
}

// fakeGraph is an httptest TLS server that records each request and answers with
// respond.
type fakeGraph struct {
	srv *httptest.Server

	mu   sync.Mutex
	seen []seenRequest
}

func newFakeGraph(t *testing.T, respond http.HandlerFunc) *fakeGraph {
	t.Helper()
	g := &fakeGraph{}
	g.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		g.mu.Lock()
		g.seen = append(g.seen, seenRequest{
			Method: r.Method, EscapedPath: r.URL.EscapedPath(), RawQuery: r.URL.RawQuery,
			Header: r.Header.Clone(), Body: body, ContentLength: r.ContentLength, TransferEncoding: r.TransferEncoding,
		})
		g.mu.Unlock()
		respond(w, r)
	}))
	t.Cleanup(g.srv.Close)
	return g
}

func (g *fakeGraph) requests() []seenRequest {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]seenRequest(nil), g.seen...)
}

// client returns a graph.Client for g with cred (a static token when nil).
func (g *fakeGraph) client(t *testing.T, cred graph.TokenSource, timeout time.Duration) *graph.Client {
	t.Helper()
	if cred == nil {
		cred = staticToken{token: testToken}
	}
	c, err := graph.New(graph.Config{BaseURL: g.srv.URL + "/v1.0/", HTTPClient: g.srv.Client(), Credential: cred, AttemptTimeout: timeout})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return c
}

// staticToken is a TokenSource that always answers the same.
type staticToken struct {
	token string
	err   error
}

func (s staticToken) Token(context.Context, string) (string, error)   { return s.token, s.err }
func (s staticToken) Refresh(context.Context, string) (string, error) { return s.token, s.err }

func noContent(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("request-id", "req-1")
	w.Header().Set("client-request-id", r.Header.Get("client-request-id"))
	w.WriteHeader(http.StatusNoContent)
}

func TestRecoverPasscodeRequest(t *testing.T) {
	g := newFakeGraph(t, noContent)
	c := g.client(t, nil, 0)
	targets := []wire.Target{
		{ManagedDeviceID: deviceID},
		{ManagedDeviceID: deviceID, UserID: "o'brien@contoso.com"},
		{ManagedDeviceID: deviceID, DetectedAppID: "app.1"},
	}
	ids := map[string]bool{}
	for i, target := range targets {
		t.Run(target.Form(), func(t *testing.T) {
			resp, err := c.RecoverPasscode(context.Background(), target)
			if err != nil {
				t.Fatalf("RecoverPasscode: %v", err)
			}
			req := g.requests()[i]
			path, _ := target.Path()
			switch {
			case req.Method != http.MethodPost:
				t.Fatalf("method %s", req.Method)
			case req.EscapedPath != "/v1.0"+path || req.RawQuery != "":
				t.Fatalf("path %q query %q, want /v1.0%s", req.EscapedPath, req.RawQuery, path)
			case len(req.Body) != 0 || req.ContentLength != 0 || len(req.TransferEncoding) != 0:
				t.Fatalf("body %q length %d encoding %v, want none", req.Body, req.ContentLength, req.TransferEncoding)
			case req.Header.Get("Authorization") != "Bearer "+testToken:
				t.Fatalf("Authorization %q", req.Header.Get("Authorization"))
			case req.Header.Get("Accept") != "application/json":
				t.Fatalf("Accept %q", req.Header.Get("Accept"))
			case req.Header.Get("return-client-request-id") != "true":
				t.Fatalf("return-client-request-id %q", req.Header.Get("return-client-request-id"))
			}
			id := req.Header.Get("client-request-id")
			if !wire.IsGUID(id) || ids[id] {
				t.Fatalf("client-request-id %q is not a fresh GUID", id)
			}
			ids[id] = true
			want := graph.Response{Status: 204, RequestID: "req-1", ClientRequestID: id, Form: target.Form()}
			if resp.Date.IsZero() || resp.Duration <= 0 || resp.Sent.IsZero() {
				t.Fatalf("Response %+v lacks Date, Duration or Sent", resp)
			}
			resp.Date, resp.Duration, resp.Sent = time.Time{}, 0, time.Time{}
			if resp != want {
				t.Fatalf("Response = %+v, want %+v", resp, want)
			}
		})
	}
}

func TestRecoverPasscodeStatuses(t *testing.T) {
	tests := []struct {
		status int
		code   string
		class  error
	}{
		{400, "BadRequest", graph.ErrPermanent},
		{401, "InvalidAuthenticationToken", graph.ErrUnauthorized},
		{403, "Forbidden", graph.ErrPermanent},
		{404, "ResourceNotFound", graph.ErrPermanent},
		{405, "MethodNotAllowed", graph.ErrPermanent},
		{409, "Conflict", graph.ErrPermanent},
		{429, "TooManyRequests", graph.ErrThrottled},
		{500, "InternalServerError", graph.ErrUnknownOutcome},
		{502, "BadGateway", graph.ErrUnknownOutcome},
		{503, "ServiceUnavailable", graph.ErrTransient},
		{504, "GatewayTimeout", graph.ErrUnknownOutcome},
	}
	for _, tt := range tests {
		t.Run(tt.code, func(t *testing.T) {
			g := newFakeGraph(t, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("request-id", "req-42")
				w.Header().Set("client-request-id", r.Header.Get("client-request-id"))
				writeJSON(w, tt.status, map[string]any{"error": map[string]any{
					"code": tt.code, "message": "Something about " + tt.code,
					"innerError": map[string]string{"request-id": "inner-req", "date": "2026-01-02T03:04:05"},
				}})
			})
			resp, err := g.client(t, nil, 0).RecoverPasscode(context.Background(), wire.Target{ManagedDeviceID: deviceID})
			var apiErr *graph.APIError
			if !errors.As(err, &apiErr) || !errors.Is(err, tt.class) {
				t.Fatalf("error = %v, want an *APIError of class %v", err, tt.class)
			}
			if apiErr.Class() != tt.class || apiErr.Status != tt.status || apiErr.Code != tt.code ||
				apiErr.Message != "Something about "+tt.code || apiErr.RequestID != "req-42" {
				t.Fatalf("APIError = %+v", apiErr)
			}
			if resp.Status != tt.status || resp.RequestID != "req-42" || !wire.IsGUID(resp.ClientRequestID) ||
				apiErr.ClientRequestID != resp.ClientRequestID {
				t.Fatalf("Response = %+v, want status and IDs filled", resp)
			}
			if !strings.Contains(err.Error(), tt.code) || !strings.Contains(err.Error(), "req-42") {
				t.Fatalf("error text %q lacks the code or request-id", err)
			}
		})
	}
}

func TestRecoverPasscodeErrorBodies(t *testing.T) {
	tests := []struct {
		name    string
		body    string
		check   func(t *testing.T, e *graph.APIError)
		headers bool
	}{
		{"innerError fills missing headers", `{"error":{"code":"Forbidden","message":"No.","innerError":{"request-id":"in-1","client-request-id":"cr-1","date":"2026-01-02T03:04:05"}}}`,
			func(t *testing.T, e *graph.APIError) {
				want := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
				if e.Code != "Forbidden" || e.RequestID != "in-1" || !e.Date.Equal(want) {
					t.Fatalf("APIError = %+v", e)
				}
			}, false},
		{"HTML from a gateway", "<html><body>\n<h1>403 Forbidden</h1>\n</body></html>",
			func(t *testing.T, e *graph.APIError) {
				if e.Code != "" || !strings.Contains(e.Message, "403 Forbidden") || strings.Contains(e.Message, "\n") {
					t.Fatalf("APIError = %+v, want a one-line excerpt", e)
				}
			}, true},
		{"empty", "",
			func(t *testing.T, e *graph.APIError) {
				if e.Code != "" || e.Message != "" || e.Status != 403 {
					t.Fatalf("APIError = %+v", e)
				}
			}, true},
		{"huge", `{"error":{"code":"Forbidden","message":"` + strings.Repeat("x", 1<<20) + `"}}`,
			func(t *testing.T, e *graph.APIError) {
				if e.Status != 403 || len(e.Message) > 1100 {
					t.Fatalf("APIError status %d message length %d", e.Status, len(e.Message))
				}
			}, true},
		{"echoes the token", `{"error":{"code":"Forbidden","message":"token ` + testToken + ` is bad"}}`,
			func(t *testing.T, e *graph.APIError) {
				if e.Code != "Forbidden" || strings.Contains(e.Error(), testToken) {
					t.Fatalf("APIError %q shows the token", e.Error())
				}
			}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := newFakeGraph(t, func(w http.ResponseWriter, r *http.Request) {
				if tt.headers {
					w.Header().Set("request-id", "req-h")
				} else {
					w.Header()["Date"] = nil // leave the date to innerError
				}
				w.WriteHeader(http.StatusForbidden)
				_, _ = io.WriteString(w, tt.body)
			})
			_, err := g.client(t, nil, 0).RecoverPasscode(context.Background(), wire.Target{ManagedDeviceID: deviceID})
			var apiErr *graph.APIError
			if !errors.As(err, &apiErr) || !errors.Is(err, graph.ErrPermanent) {
				t.Fatalf("error = %v, want a permanent *APIError", err)
			}
			tt.check(t, apiErr)
		})
	}
}

func TestRecoverPasscodeRetryAfter(t *testing.T) {
	tests := []struct {
		name   string
		status int
		header string
		want   time.Duration
		has    bool
	}{
		{"429 seconds", 429, "7", 7 * time.Second, true},
		{"429 none", 429, "", 0, false},
		{"429 garbage", 429, "later", 0, false},
		{"503 date", 503, time.Now().Add(time.Hour + time.Minute).UTC().Format(http.TimeFormat), time.Hour, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := newFakeGraph(t, func(w http.ResponseWriter, r *http.Request) {
				if tt.header != "" {
					w.Header().Set("Retry-After", tt.header)
				}
				w.WriteHeader(tt.status)
			})
			_, err := g.client(t, nil, 0).RecoverPasscode(context.Background(), wire.Target{ManagedDeviceID: deviceID})
			var apiErr *graph.APIError
			if !errors.As(err, &apiErr) || apiErr.RetryAfter != tt.want || apiErr.HasRetryAfter != tt.has {
				t.Fatalf("error = %#v, want RetryAfter %v (%v)", err, tt.want, tt.has)
			}
		})
	}
}

// hangUntilGone answers nothing until the client has gone, then aborts the
// response. Returning instead would send an empty 200 as the connection
// closes, and the client's transport, racing its own cancellation, reads
// that as Graph's answer now and then (1 run in 12 under -race).
func hangUntilGone(w http.ResponseWriter, r *http.Request) {
	<-r.Context().Done()
	panic(http.ErrAbortHandler)
}

func TestRecoverPasscodeTransportFailures(t *testing.T) {
	t.Run("hangs past the attempt timeout", func(t *testing.T) {
		g := newFakeGraph(t, hangUntilGone)
		resp, err := g.client(t, nil, 200*time.Millisecond).RecoverPasscode(context.Background(), wire.Target{ManagedDeviceID: deviceID})
		if !errors.Is(err, graph.ErrUnknownOutcome) || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("error = %v, want ErrUnknownOutcome and DeadlineExceeded", err)
		}
		if resp.Status != 0 || !wire.IsGUID(resp.ClientRequestID) {
			t.Fatalf("Response = %+v", resp)
		}
	})
	t.Run("reset after the request was read", func(t *testing.T) {
		g := newFakeGraph(t, func(w http.ResponseWriter, r *http.Request) {
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				conn.Close()
			}
		})
		_, err := g.client(t, nil, 0).RecoverPasscode(context.Background(), wire.Target{ManagedDeviceID: deviceID})
		if !errors.Is(err, graph.ErrUnknownOutcome) {
			t.Fatalf("error = %v, want ErrUnknownOutcome", err)
		}
	})
	t.Run("closed port", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		c, err := graph.New(graph.Config{BaseURL: "https://" + addr + "/v1.0", Credential: staticToken{token: testToken}})
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.RecoverPasscode(context.Background(), wire.Target{ManagedDeviceID: deviceID})
		var apiErr *graph.APIError
		if !errors.Is(err, graph.ErrTransient) || !errors.As(err, &apiErr) || apiErr.Status != 0 {
			t.Fatalf("error = %v, want a transient *APIError", err)
		}
		if strings.Contains(err.Error(), testToken) {
			t.Fatalf("error %q shows the token", err)
		}
	})
	t.Run("caller cancels", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		g := newFakeGraph(t, func(w http.ResponseWriter, r *http.Request) { cancel(); hangUntilGone(w, r) })
		_, err := g.client(t, nil, 0).RecoverPasscode(ctx, wire.Target{ManagedDeviceID: deviceID})
		if !errors.Is(err, context.Canceled) || !errors.Is(err, graph.ErrUnknownOutcome) {
			t.Fatalf("error = %v, want Canceled and ErrUnknownOutcome (the request was sent)", err)
		}
	})
}

func TestRecoverPasscodeNoCall(t *testing.T) {
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name   string
		ctx    context.Context
		cred   graph.TokenSource
		target wire.Target
		is     error
		not    error
	}{
		{"invalid target", context.Background(), nil, wire.Target{ManagedDeviceID: "../x"}, nil, graph.ErrCredential},
		{"no token", context.Background(), staticToken{err: errors.New("msal: boom")}, wire.Target{ManagedDeviceID: deviceID}, graph.ErrCredential, nil},
		{"canceled while getting a token", canceled, staticToken{err: context.Canceled}, wire.Target{ManagedDeviceID: deviceID}, context.Canceled, graph.ErrCredential},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := newFakeGraph(t, noContent)
			_, err := g.client(t, tt.cred, 0).RecoverPasscode(tt.ctx, tt.target)
			if err == nil || tt.is != nil && !errors.Is(err, tt.is) || tt.not != nil && errors.Is(err, tt.not) {
				t.Fatalf("error = %v, want Is %v and not %v", err, tt.is, tt.not)
			}
			if n := len(g.requests()); n != 0 {
				t.Fatalf("Graph was called %d times", n)
			}
		})
	}
	var fe *wire.FieldError
	g := newFakeGraph(t, noContent)
	if _, err := g.client(t, nil, 0).RecoverPasscode(context.Background(), wire.Target{}); !errors.As(err, &fe) {
		t.Fatalf("error = %v, want a *wire.FieldError", err)
	}
}

func TestRecoverPasscodeRedirectNotFollowed(t *testing.T) {
	g := newFakeGraph(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "https://elsewhere.example/steal", http.StatusTemporaryRedirect)
	})
	_, err := g.client(t, nil, 0).RecoverPasscode(context.Background(), wire.Target{ManagedDeviceID: deviceID})
	if !errors.Is(err, graph.ErrPermanent) || len(g.requests()) != 1 {
		t.Fatalf("error = %v after %d requests, want ErrPermanent after 1", err, len(g.requests()))
	}
}

func TestNewConfig(t *testing.T) {
	cred := staticToken{token: testToken}
	tests := []struct {
		name string
		cfg  graph.Config
		ok   bool
	}{
		{"defaults", graph.Config{Credential: cred}, true},
		{"national cloud", graph.Config{Credential: cred, BaseURL: "https://graph.microsoft.us/v1.0"}, true},
		{"http loopback", graph.Config{Credential: cred, BaseURL: "http://127.0.0.1:8080/v1.0"}, true},
		{"no credential", graph.Config{}, false},
		{"http remote", graph.Config{Credential: cred, BaseURL: "http://graph.microsoft.com/v1.0"}, false},
		{"query", graph.Config{Credential: cred, BaseURL: "https://graph.microsoft.com/v1.0?x=1"}, false},
		{"no host", graph.Config{Credential: cred, BaseURL: "/v1.0"}, false},
		{"user info", graph.Config{Credential: cred, BaseURL: "https://u:p@graph.microsoft.com/v1.0"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := graph.New(tt.cfg); (err == nil) != tt.ok {
				t.Fatalf("New = %v, want ok %v", err, tt.ok)
			}
		})
	}
}

// TestRecoverPasscodeWithCredential runs real MSAL against the fake Entra ID and the
// fake Graph: Graph refuses the first token, the caller refreshes once, and the new
// token is accepted.
func TestRecoverPasscodeWithCredential(t *testing.T) {
	e := newEntra(t)
	cred, _ := newSecretCredential(t, e)
	var refused sync.Map
	g := newFakeGraph(t, func(w http.ResponseWriter, r *http.Request) {
		auth := r.Header.Get("Authorization")
		if _, seen := refused.LoadOrStore(auth, true); !seen && strings.Contains(auth, "-1") {
			writeJSON(w, http.StatusUnauthorized, map[string]any{"error": map[string]string{"code": "InvalidAuthenticationToken"}})
			return
		}
		noContent(w, r)
	})
	c := g.client(t, cred, 0)
	ctx := context.Background()
	target := wire.Target{TenantID: tenantB, ManagedDeviceID: deviceID}

	_, err := c.RecoverPasscode(ctx, target)
	if !errors.Is(err, graph.ErrUnauthorized) {
		t.Fatalf("first call = %v, want ErrUnauthorized", err)
	}
	if _, err := cred.Refresh(ctx, target.TenantID); err != nil {
		t.Fatalf("Refresh: %v", err)
	}
	if _, err := c.RecoverPasscode(ctx, target); err != nil {
		t.Fatalf("second call: %v", err)
	}
	reqs := g.requests()
	if len(reqs) != 2 || reqs[0].Header.Get("Authorization") != "Bearer at-"+tenantB+"-1" ||
		reqs[1].Header.Get("Authorization") != "Bearer at-"+tenantB+"-2" {
		t.Fatalf("Graph saw %d requests: %+v", len(reqs), reqs)
	}
	if toks := e.tokenRequests(); len(toks) != 2 || toks[0].Tenant != tenantB || toks[1].Tenant != tenantB {
		t.Fatalf("token requests = %+v, want two to the job's tenant", toks)
	}
}

const deviceID = "0f8fad5b-d9cb-469f-a165-70867728950e"
