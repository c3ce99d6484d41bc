package gateway

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Submission outcomes, the outcome label of
// recoverpasscode_gateway_submissions_total.
const (
	// submitAccepted: a new job was published.
	submitAccepted = "accepted"
	// submitRepeated: a retried request named a job already submitted.
	submitRepeated = "repeated"
	// submitInvalid: the body was refused (400, 413); nothing published.
	submitInvalid = "invalid"
	// submitConflict: the key was used with another body (422).
	submitConflict = "conflict"
	// submitUnavailable: NATS did not answer (503).
	submitUnavailable = "unavailable"
	// submitOverBudget: the source is over its budget (429); nothing
	// published.
	submitOverBudget = "over_budget"
)

// Wait outcomes, the outcome label of recoverpasscode_gateway_waits_total.
const (
	waitResult   = "result"   // the result came in time: 200
	waitTimeout  = "timeout"  // it did not: 202
	waitCanceled = "canceled" // the client went away first
)

// metrics are the gateway's collectors. Their names are part of the
// operating contract, like the worker's.
type metrics struct {
	requests    *prometheus.CounterVec
	latency     *prometheus.HistogramVec
	submissions *prometheus.CounterVec
	waits       *prometheus.CounterVec
	authFailed  *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "recoverpasscode_gateway_requests_total",
			Help: "HTTP requests answered, by route pattern, method and status code.",
		}, []string{"route", "method", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "recoverpasscode_gateway_request_duration_seconds",
			Help:    "Time to answer an HTTP request, by route pattern (a POST with Prefer: wait includes the wait).",
			Buckets: []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"route"}),
		submissions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "recoverpasscode_gateway_submissions_total",
			Help: "POST /v1/jobs by source and outcome (accepted, repeated, invalid, conflict, unavailable, over_budget).",
		}, []string{"source", "outcome"}),
		waits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "recoverpasscode_gateway_waits_total",
			Help: "Prefer: wait submissions by outcome (result: answered 200 in time; timeout: 202; canceled: the client left).",
		}, []string{"outcome"}),
		authFailed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "recoverpasscode_gateway_auth_failures_total",
			Help: "Requests refused by authentication (401) or authorization (403), by status code.",
		}, []string{"code"}),
	}
	reg.MustRegister(m.requests, m.latency, m.submissions, m.waits, m.authFailed)
	for _, o := range []string{waitResult, waitTimeout, waitCanceled} {
		m.waits.WithLabelValues(o)
	}
	for _, code := range []string{"401", "403"} {
		m.authFailed.WithLabelValues(code)
	}
	return m
}

// knownMethods are the method label's values; any other method a client
// sends is counted as "other", so that no client can grow the series.
var knownMethods = map[string]bool{"GET": true, "HEAD": true, "POST": true, "PUT": true, "PATCH": true, "DELETE": true, "OPTIONS": true}

func (m *metrics) observe(route, method string, status int, d time.Duration) {
	if !knownMethods[method] {
		method = "other"
	}
	m.requests.WithLabelValues(route, method, strconv.Itoa(status)).Inc()
	m.latency.WithLabelValues(route).Observe(d.Seconds())
}
