package graphsim

import (
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// graphResponse is how the Server answers one Graph call.
type graphResponse struct {
	status     int
	code       string // Graph error code; "" for success
	message    string
	retryAfter string
	hang       bool
	reset      bool
}

// graphErrorBody is Graph's error shape, fields in Graph's order.
type graphErrorBody struct {
	Error graphErrorDetail `json:"error"`
}

type graphErrorDetail struct {
	Code       string          `json:"code"`
	Message    string          `json:"message"`
	InnerError graphInnerError `json:"innerError"`
}

type graphInnerError struct {
	RequestID       string `json:"request-id"`
	ClientRequestID string `json:"client-request-id"`
	Date            string `json:"date"`
}

// serveGraph answers one Graph call: it reads the request, asks for a fault,
// decides and records the call under the lock (so decisions happen in Time
// order and the limiter sees calls in that order), waits out the latency,
// then answers.
func (s *Server) serveGraph(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodGet && !strings.HasSuffix(strings.ToLower(r.URL.EscapedPath()), "/recoverpasscode") {
		s.serveRead(w, r)
		return
	}
	body, readErr := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	rt := parseRoute(r.URL.EscapedPath())
	c := Call{
		Time:            time.Now(),
		Method:          r.Method,
		Path:            r.URL.EscapedPath(),
		Form:            rt.form,
		DeviceID:        rt.deviceID,
		UserID:          rt.userID,
		DetectedAppID:   rt.detectedAppID,
		RequestID:       newGUID(),
		ClientRequestID: r.Header.Get("client-request-id"),
	}
	if c.ClientRequestID == "" {
		c.ClientRequestID = newGUID()
	}
	token, hasToken := bearerToken(r)
	s.mu.Lock()
	g := s.tokens.access[token]
	if g != nil {
		c.TenantID, c.AppID, c.Delegated = g.tenantID, g.appID, g.user != nil
	}
	s.mu.Unlock()

	fault := s.nextFault(c)

	s.mu.Lock()
	c.Time = time.Now()
	var resp graphResponse
	switch {
	case fault != nil && !fault.PerformBeforeFailing:
		resp = faultResponse(fault)
	case fault != nil:
		_ = s.decideLocked(&c, r, body, readErr, hasToken, g, rt)
		resp = faultResponse(fault)
	default:
		resp = s.decideLocked(&c, r, body, readErr, hasToken, g, rt)
	}
	c.Injected = fault != nil
	c.Status, c.ErrorCode, c.Hung, c.Reset = resp.status, resp.code, resp.hang, resp.reset
	s.recordLocked(c)
	s.mu.Unlock()
	s.cfg.Logf("graphsim: graph %s %s tenant=%s app=%s status=%d code=%s performed=%t injected=%t limited=%t hung=%t reset=%t",
		c.Method, c.Path, c.TenantID, c.AppID, c.Status, c.ErrorCode, c.Performed, c.Injected, c.LimitRejected, c.Hung, c.Reset)

	s.answer(w, r, &c, resp)
}

// decideLocked runs the normal pipeline: authentication, route, method,
// query and body validation, the sliding-window limits, the device's
// existence, and then the action.
func (s *Server) decideLocked(c *Call, r *http.Request, body []byte, readErr error, hasToken bool, g *grant, rt route) graphResponse {
	now := c.Time
	switch {
	case !hasToken:
		return graphResponse{status: http.StatusUnauthorized, code: "InvalidAuthenticationToken", message: "Access token is empty."}
	case g == nil:
		return graphResponse{status: http.StatusUnauthorized, code: "InvalidAuthenticationToken", message: "Access token validation failure. Invalid audience."}
	case now.After(g.expires):
		return graphResponse{status: http.StatusUnauthorized, code: "InvalidAuthenticationToken", message: "Lifetime validation failed, the token is expired."}
	case rt.errResp != nil:
		return *rt.errResp
	case r.Method != http.MethodPost:
		return graphResponse{status: http.StatusMethodNotAllowed, code: "MethodNotAllowed", message: "Request method '" + r.Method + "' is not allowed for recoverPasscode; use POST."}
	case r.URL.RawQuery != "":
		return *badRequest("recoverPasscode takes no query options.")
	case readErr != nil || len(body) > 0:
		return *badRequest("recoverPasscode takes no request body.")
	}
	if ok, wait := s.limits.admitLocked(g.tenantID, g.appID, now); !ok {
		c.LimitRejected = true
		return graphResponse{status: http.StatusTooManyRequests, code: "TooManyRequests",
			message:    "Too many requests. The limit for this app in this tenant has been reached; retry after the time in the Retry-After header.",
			retryAfter: strconv.FormatInt(retryAfterSeconds(wait), 10)}
	}
	if s.dir.missing[strings.ToLower(rt.deviceID)] {
		return *notFound("The managed device '" + rt.deviceID + "' was not found.")
	}
	c.Performed = true
	s.performLocked(rt.deviceID, now)
	return graphResponse{status: http.StatusNoContent}
}

// bearerToken returns the request's bearer token and whether it sent one.
func bearerToken(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	scheme, token, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(token) == "" {
		return "", false
	}
	return strings.TrimSpace(token), true
}

// answer waits out the latency and then answers the call as decided. A
// client that goes away during the latency gets nothing, as with a real
// service that acted and then lost its client. A call cut short (by its
// client or by Close) aborts its connection, so no partial answer is sent.
func (s *Server) answer(w http.ResponseWriter, r *http.Request, c *Call, resp graphResponse) {
	if !s.wait(r, time.Duration(s.latency.Load())) {
		panic(http.ErrAbortHandler) // Returning would send an empty 200.
	}
	switch {
	case resp.hang:
		select {
		case <-r.Context().Done():
		case <-s.closing:
		}
		panic(http.ErrAbortHandler)
	case resp.reset:
		resetConn(w)
		return
	}

	now := time.Now().UTC()
	h := w.Header()
	h.Set("request-id", c.RequestID)
	h.Set("client-request-id", c.ClientRequestID)
	h.Set("Date", now.Format(http.TimeFormat))
	if resp.retryAfter != "" {
		h.Set("Retry-After", resp.retryAfter)
	}
	switch resp.status {
	case http.StatusNoContent:
		w.WriteHeader(http.StatusNoContent)
		return
	case http.StatusUnauthorized:
		h.Set("WWW-Authenticate", `Bearer realm="", authorization_uri="`+s.AuthorityHost()+`/common/oauth2/authorize", client_id="00000003-0000-0000-c000-000000000000"`)
	case http.StatusMethodNotAllowed:
		h.Set("Allow", http.MethodPost)
	}
	body, err := json.Marshal(graphErrorBody{Error: graphErrorDetail{
		Code:    resp.code,
		Message: resp.message,
		InnerError: graphInnerError{
			RequestID:       c.RequestID,
			ClientRequestID: c.ClientRequestID,
			Date:            now.Format("2006-01-02T15:04:05"),
		},
	}})
	if err != nil {
		http.Error(w, "graphsim: encode error", http.StatusInternalServerError)
		return
	}
	h.Set("Content-Type", "application/json")
	w.WriteHeader(resp.status)
	_, _ = w.Write(body)
}
