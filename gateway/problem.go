package gateway

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// ProblemType is the stable type URI of a kind of error, the "type" member
// of an RFC 9457 problem. Clients branch on it, never on title or detail.
type ProblemType string

// The kinds of error the gateway answers with. The URIs are names, not
// addresses: the OpenAPI document describes each.
const (
	// ProblemInvalidJob: the body is not a job the worker would accept
	// (400). Nothing was published.
	ProblemInvalidJob ProblemType = "urn:recoverpasscode:problem:invalid-job"
	// ProblemInvalidRequest: a header, a query parameter or the cursor is
	// malformed (400).
	ProblemInvalidRequest ProblemType = "urn:recoverpasscode:problem:invalid-request"
	// ProblemKeyReused: the Idempotency-Key (or job id) was used before with
	// another body (422).
	ProblemKeyReused ProblemType = "urn:recoverpasscode:problem:idempotency-key-reused"
	// ProblemUnauthenticated: no credential, or one that is not valid (401).
	ProblemUnauthenticated ProblemType = "urn:recoverpasscode:problem:unauthenticated"
	// ProblemNotAllowed: a valid credential that may not do this (403).
	ProblemNotAllowed ProblemType = "urn:recoverpasscode:problem:not-allowed"
	// ProblemNotFound: no such job or batch for the caller's source, or no
	// such route (404).
	ProblemNotFound ProblemType = "urn:recoverpasscode:problem:not-found"
	// ProblemMethodNotAllowed: the route exists, the method does not (405).
	ProblemMethodNotAllowed ProblemType = "urn:recoverpasscode:problem:method-not-allowed"
	// ProblemTooLarge: the body is larger than a job may be (413).
	ProblemTooLarge ProblemType = "urn:recoverpasscode:problem:too-large"
	// ProblemOverBudget: the source is over its budget, the workers'
	// RECOVER_SOURCE_LIMITS (429 with Retry-After, the whole seconds until
	// the budget has room). Nothing was recorded or published.
	ProblemOverBudget ProblemType = "urn:recoverpasscode:problem:over-budget"
	// ProblemUnavailable: NATS did not answer (503 with Retry-After).
	// Nothing was accepted; the same request may be retried.
	ProblemUnavailable ProblemType = "urn:recoverpasscode:problem:unavailable"
	// ProblemInternal: a fault of the gateway (500).
	ProblemInternal ProblemType = "urn:recoverpasscode:problem:internal"
)

// problemTitles are the fixed, short titles of each kind.
var problemTitles = map[ProblemType]string{
	ProblemInvalidJob:       "The job is not valid",
	ProblemInvalidRequest:   "The request is not valid",
	ProblemKeyReused:        "The idempotency key was used with another request",
	ProblemUnauthenticated:  "Not authenticated",
	ProblemNotAllowed:       "Not allowed",
	ProblemNotFound:         "Not found",
	ProblemMethodNotAllowed: "Method not allowed",
	ProblemTooLarge:         "The request body is too large",
	ProblemOverBudget:       "Over the source's budget",
	ProblemUnavailable:      "The queue is unavailable",
	ProblemInternal:         "Internal error",
}

// Problem is an RFC 9457 problem details object, the body of every error
// answer (application/problem+json).
type Problem struct {
	Type   ProblemType `json:"type"`
	Title  string      `json:"title"`
	Status int         `json:"status"`
	// Detail says exactly what is wrong, for a person.
	Detail string `json:"detail"`
	// Instance is the request's path.
	Instance string `json:"instance,omitempty"`
	// RequestID is the request's X-Request-Id, to quote when asking for
	// help; the access log holds the same.
	RequestID string `json:"requestId,omitempty"`
	// JobID names the job concerned, when there is one.
	JobID string `json:"jobId,omitempty"`

	retryAfter time.Duration
	challenge  string // WWW-Authenticate, on 401
}

// problemError is an error that is answered as a Problem.
type problemError struct{ p Problem }

func (e *problemError) Error() string { return string(e.p.Type) + ": " + e.p.Detail }

// newProblem makes a problem of kind t with HTTP status and detail.
func newProblem(t ProblemType, status int, format string, args ...any) *problemError {
	return &problemError{Problem{Type: t, Title: problemTitles[t], Status: status, Detail: fmt.Sprintf(format, args...)}}
}

func (e *problemError) withRetryAfter(d time.Duration) *problemError {
	e.p.retryAfter = d
	return e
}

func (e *problemError) withJob(id string) *problemError {
	e.p.JobID = id
	return e
}

// writeProblem answers with p. It never echoes credentials: details are
// written by this package and say what is wrong, not what was sent.
func writeProblem(w http.ResponseWriter, r *http.Request, p Problem) {
	p.Instance = r.URL.Path
	p.RequestID = requestIDOf(r.Context())
	h := w.Header()
	h.Set("Content-Type", "application/problem+json")
	h.Set("Cache-Control", "no-store")
	if p.retryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(int((p.retryAfter+time.Second-1)/time.Second)))
	}
	if p.challenge != "" {
		h.Set("WWW-Authenticate", p.challenge)
	}
	body, err := json.Marshal(p)
	if err != nil { // a Problem always encodes
		body = []byte(`{"type":"` + string(ProblemInternal) + `","title":"Internal error","status":500}`)
	}
	w.WriteHeader(p.Status)
	_, _ = w.Write(append(body, '\n'))
}

// writeJSON answers with v as JSON.
func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		http.Error(w, "gateway: encode response", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}
