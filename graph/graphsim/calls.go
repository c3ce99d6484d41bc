package graphsim

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// The path forms of recoverPasscode, as recorded in Call.Form.
const (
	// FormManagedDevice is /deviceManagement/managedDevices/{id}/recoverPasscode.
	FormManagedDevice = "managedDevice"
	// FormUser is /users/{userId}/managedDevices/{id}/recoverPasscode.
	FormUser = "user"
	// FormDetectedApp is
	// /deviceManagement/detectedApps/{appId}/managedDevices/{id}/recoverPasscode.
	FormDetectedApp = "detectedApp"
)

// Call is one request to Graph, as the Server saw and decided it.
type Call struct {
	// Time is when the Server decided the call: after reading the request,
	// before Latency. Calls are recorded in Time order.
	Time time.Time
	// Method is the request's HTTP method.
	Method string
	// Path is the request's escaped path, as received.
	Path string
	// Form is the path form (FormManagedDevice, FormUser, FormDetectedApp),
	// or "" when the path matched none.
	Form string
	// TenantID and AppID are those of the bearer token, in lower case, when
	// the Server issued it (even if it has expired since), else "".
	TenantID, AppID string
	// DeviceID, UserID and DetectedAppID are the unescaped path keys, as
	// received (empty when the form has none).
	DeviceID, UserID, DetectedAppID string
	// Status is the HTTP status answered, or 0 when the call was held (Hung)
	// or its connection reset (Reset).
	Status int
	// ErrorCode is the Graph error code answered, "" on success.
	ErrorCode string
	// RequestID is the request-id the Server answered with.
	RequestID string
	// ClientRequestID is the client-request-id answered: the request's own,
	// or a new one when it sent none.
	ClientRequestID string
	// Performed reports whether the action ran on the device.
	Performed bool
	// LimitRejected reports a 429 from the sliding-window limits, as opposed
	// to an injected one.
	LimitRejected bool
	// Injected reports that a fault (FailNext, ThrottleTenant or the fault
	// function) decided the answer.
	Injected bool
	// Hung reports that the Server held the call until the client went away.
	Hung bool
	// Reset reports that the Server closed the connection without answering.
	Reset bool
	// Delegated reports that the token was a signed-in user's.
	Delegated bool
}

// callLog is what Graph saw. Guarded by Server.mu.
type callLog struct {
	calls     []Call
	performed map[string]int // by lower-case device ID
}

func newCallLog() callLog {
	return callLog{performed: map[string]int{}}
}

// recordLocked appends c and wakes every waiter.
func (s *Server) recordLocked(c Call) {
	s.log.calls = append(s.log.calls, c)
	if c.Performed {
		s.log.performed[strings.ToLower(c.DeviceID)]++
	}
	s.broadcastLocked()
}

// broadcastLocked wakes everything blocked in waitFor so it re-checks its
// condition.
func (s *Server) broadcastLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// waitFor blocks until cond, evaluated with s.mu held, is true, re-checking
// it after each change to the Server's state rather than on a timer.
func (s *Server) waitFor(ctx context.Context, cond func() bool) error {
	for {
		s.mu.Lock()
		if cond() {
			s.mu.Unlock()
			return nil
		}
		changed := s.changed
		s.mu.Unlock()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-changed:
		case <-s.closing:
			return ErrClosed
		}
	}
}

// Calls returns a copy of every Graph call decided so far, rejected ones
// included, in the order they were decided (which is Time order).
func (s *Server) Calls() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Call(nil), s.log.calls...)
}

// Performed returns how many times the action actually ran on deviceID, in
// any tenant and path form, including runs answered with an error by a
// PerformBeforeFailing fault.
func (s *Server) Performed(deviceID string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.log.performed[strings.ToLower(deviceID)]
}

// MaxInWindow returns the largest number of Graph calls, whatever their
// outcome, made with tokens of appID in tenantID whose Time falls within any
// half-open interval of length window. A client that keeps its calls within
// the limit keeps this at or under Config.Limit.
func (s *Server) MaxInWindow(tenantID, appID string, window time.Duration) int {
	tenantID, appID = strings.ToLower(tenantID), strings.ToLower(appID)
	s.mu.Lock()
	var times []time.Time
	for _, c := range s.log.calls {
		if c.TenantID == tenantID && c.AppID == appID {
			times = append(times, c.Time)
		}
	}
	s.mu.Unlock()

	best, j := 0, 0
	for i := range times {
		for j < len(times) && times[j].Sub(times[i]) < window {
			j++
		}
		best = max(best, j-i)
	}
	return best
}

// WaitCalls waits until at least n Graph calls have been decided. A call is
// decided before its answer is sent, so a client holding an answer finds its
// call in Calls. It returns ctx's error if ctx ends first, and ErrClosed if
// the Server closes first.
func (s *Server) WaitCalls(ctx context.Context, n int) error {
	err := s.waitFor(ctx, func() bool { return len(s.log.calls) >= n })
	if err != nil {
		return fmt.Errorf("graphsim: wait for %d calls: %w", n, err)
	}
	return nil
}
