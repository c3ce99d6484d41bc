package graphsim

import (
	"crypto/tls"
	"net"
	"net/http"
	"strings"
)

// Fault is an answer a test imposes on a Graph call instead of the normal
// one.
type Fault struct {
	// Status is the HTTP status answered. Defaults to 500 unless Hang or
	// Reset is set.
	Status int
	// RetryAfter is the Retry-After header's value (seconds or an HTTP
	// date), or "" for none.
	RetryAfter string
	// Code is the Graph error code in the body. Defaults to the code Graph
	// uses for Status (TooManyRequests for 429, ServiceUnavailable for 503,
	// GatewayTimeout for 504, ...).
	Code string
	// Hang holds the call unanswered until the client gives up or the Server
	// closes; Status, RetryAfter and Code are then unused.
	Hang bool
	// Reset closes the connection without an answer (a TCP reset); Status,
	// RetryAfter and Code are then unused. Hang wins when both are set.
	Reset bool
	// PerformBeforeFailing lets the call go through as normal (so the action
	// runs if the call is otherwise valid and within the limits) and then
	// answers with the fault instead, as a gateway timing out after the
	// service acted does.
	PerformBeforeFailing bool
}

// faultState holds the faults tests have queued. Guarded by Server.mu.
type faultState struct {
	queue     []Fault
	fn        func(Call) *Fault
	throttles map[string]*throttle // by tenant ID
}

type throttle struct {
	retryAfter string
	n          int
}

func newFaultState() faultState {
	return faultState{throttles: map[string]*throttle{}}
}

// FailNext makes the next n Graph calls, whatever they are, answer with f.
// Calls to FailNext queue up: faults are used first in, first out.
func (s *Server) FailNext(n int, f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range n {
		s.faults.queue = append(s.faults.queue, f)
	}
}

// SetFaultFunc sets a function asked about every Graph call that FailNext
// and ThrottleTenant leave alone; a non-nil Fault it returns is answered.
// The Call holds what is known on arrival (no Status yet). fn runs on the
// call's own goroutine, concurrently with other calls, without the Server's
// lock, so it may call the Server's methods. nil removes the function.
func (s *Server) SetFaultFunc(fn func(c Call) *Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults.fn = fn
}

// ThrottleTenant makes the next n Graph calls with a token of tenantID
// answer 429 TooManyRequests with Retry-After retryAfter ("" for no header),
// replacing any throttle set before for that tenant. These are recorded as
// Injected, not LimitRejected, and use no limiter slot.
func (s *Server) ThrottleTenant(tenantID, retryAfter string, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults.throttles[strings.ToLower(tenantID)] = &throttle{retryAfter: retryAfter, n: n}
}

// nextFault picks the fault for an arriving call, if any: the FailNext
// queue first, then the tenant's throttle, then the fault function.
func (s *Server) nextFault(c Call) *Fault {
	s.mu.Lock()
	if len(s.faults.queue) > 0 {
		f := s.faults.queue[0]
		s.faults.queue = s.faults.queue[1:]
		s.mu.Unlock()
		return &f
	}
	if t := s.faults.throttles[c.TenantID]; c.TenantID != "" && t != nil && t.n > 0 {
		t.n--
		s.mu.Unlock()
		return &Fault{Status: http.StatusTooManyRequests, RetryAfter: t.retryAfter, Code: "TooManyRequests"}
	}
	fn := s.faults.fn
	s.mu.Unlock()
	if fn == nil {
		return nil
	}
	return fn(c)
}

// faultResponse is the answer f imposes.
func faultResponse(f *Fault) graphResponse {
	if f.Hang || f.Reset {
		return graphResponse{hang: f.Hang, reset: f.Reset && !f.Hang}
	}
	status := f.Status
	if status == 0 {
		status = http.StatusInternalServerError
	}
	code := f.Code
	if code == "" {
		code = defaultCode(status)
	}
	return graphResponse{status: status, code: code, message: defaultMessage(status), retryAfter: f.RetryAfter}
}

// defaultCode is the Graph error code that usually comes with status.
func defaultCode(status int) string {
	switch status {
	case http.StatusBadRequest:
		return "BadRequest"
	case http.StatusUnauthorized:
		return "InvalidAuthenticationToken"
	case http.StatusForbidden:
		return "Forbidden"
	case http.StatusNotFound:
		return "ResourceNotFound"
	case http.StatusMethodNotAllowed:
		return "MethodNotAllowed"
	case http.StatusConflict:
		return "Conflict"
	case http.StatusTooManyRequests:
		return "TooManyRequests"
	case http.StatusInternalServerError:
		return "InternalServerError"
	case http.StatusBadGateway:
		return "BadGateway"
	case http.StatusServiceUnavailable:
		return "ServiceUnavailable"
	case http.StatusGatewayTimeout:
		return "GatewayTimeout"
	default:
		return "UnknownError"
	}
}

func defaultMessage(status int) string {
	switch status {
	case http.StatusTooManyRequests:
		return "Too many requests. Retry after the time in the Retry-After header."
	case http.StatusServiceUnavailable:
		return "The service is temporarily unavailable. Retry the request later."
	case http.StatusGatewayTimeout:
		return "The gateway did not receive a response in time; the request may have been processed."
	default:
		if t := http.StatusText(status); t != "" {
			return t + "."
		}
		return "An error occurred."
	}
}

// resetConn closes the request's connection with a TCP reset and no answer.
// Where the connection cannot be hijacked, the handler aborts, which also
// ends the response without an answer.
func resetConn(w http.ResponseWriter) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		panic(http.ErrAbortHandler)
	}
	conn, _, err := hj.Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	if tc, ok := conn.(*tls.Conn); ok {
		if tcp, ok := tc.NetConn().(*net.TCPConn); ok {
			_ = tcp.SetLinger(0) // Close now sends RST, not FIN.
			_ = tcp.Close()
			return
		}
	}
	_ = conn.Close()
}
