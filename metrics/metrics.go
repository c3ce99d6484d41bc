// Package metrics defines the Prometheus metrics of a worker. Every name is
// part of the operating contract: deploy/prometheus alerts and the Grafana
// dashboard use them, and a test in deploy checks they exist.
package metrics

import (
	"context"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics holds a worker's collectors. Its methods are safe for concurrent
// use.
type Metrics struct {
	jobs         *prometheus.CounterVec
	dlq          *prometheus.CounterVec
	graphCalls   *prometheus.CounterVec
	graphLatency prometheus.Histogram
	rateWait     prometheus.Histogram
	tenantPaused *prometheus.GaugeVec
	learned      *prometheus.GaugeVec
	held         *prometheus.GaugeVec
	pauses       *prometheus.CounterVec
	inFlight     prometheus.Gauge
	pending      prometheus.Gauge
	redelivered  prometheus.Gauge
	tokenErrors  prometheus.Counter
	auditLost    prometheus.Counter
	ready        prometheus.Gauge

	mu         sync.Mutex
	pauseUntil map[string]time.Time // per tenant: the gauge clears when the latest pause ends
	samplers   []func(context.Context)
}

// New creates the collectors and registers them, with the Go runtime and
// process collectors, on reg.
func New(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		pauseUntil: make(map[string]time.Time),
		jobs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "recoverpasscode_jobs_total",
			Help: "Jobs finished, by status (succeeded, failed, rejected, expired) and source.",
		}, []string{"status", "source"}),
		dlq: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "recoverpasscode_dlq_total",
			Help: "Jobs copied to the dead-letter stream, by source.",
		}, []string{"source"}),
		graphCalls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "recoverpasscode_graph_calls_total",
			Help: "Graph recoverPasscode calls, by HTTP status code (0: no response).",
		}, []string{"code"}),
		graphLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "recoverpasscode_graph_latency_seconds",
			Help:    "Time from sending a Graph call to reading its response.",
			Buckets: prometheus.ExponentialBuckets(0.01, 2, 12),
		}),
		rateWait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "recoverpasscode_ratelimit_wait_seconds",
			Help:    "Time a job waited for the shared rate limit before a Graph call.",
			Buckets: []float64{0.001, 0.01, 0.1, 0.5, 1, 2, 5, 10, 20, 40, 80},
		}),
		tenantPaused: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "recoverpasscode_tenant_paused",
			Help: "1 while this worker holds calls for a tenant paused by Graph throttling.",
		}, []string{"tenant"}),
		learned: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "recoverpasscode_ratelimit_learned_calls",
			Help: "Calls per RECOVER_RATE_LIMIT window the fleet allows itself for a tenant: the budget learned from Graph's 429s (the configured N until Graph first throttles).",
		}, []string{"tenant"}),
		held: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "recoverpasscode_jobs_held",
			Help: "Jobs held because their source is over its budget (RECOVER_SOURCE_LIMITS), across the fleet, sampled at each scrape.",
		}, []string{"source"}),
		pauses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "recoverpasscode_pauses_total",
			Help: "Cluster-wide pauses this worker set after a 429 or Retry-After, by tenant.",
		}, []string{"tenant"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "recoverpasscode_jobs_in_flight",
			Help: "Jobs this worker is processing.",
		}),
		pending: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "recoverpasscode_consumer_pending",
			Help: "Jobs waiting in the jobs consumer, sampled at each scrape.",
		}),
		redelivered: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "recoverpasscode_consumer_redelivered",
			Help: "Jobs delivered more than once and not yet acknowledged, sampled at each scrape.",
		}),
		tokenErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "recoverpasscode_token_errors_total",
			Help: "Failures to get a token from Entra ID.",
		}),
		auditLost: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "recoverpasscode_audit_lost_total",
			Help: "Audit events the audit stream did not confirm: not after retrying for 10 minutes, not by the time the worker stopped, or with the retry queue full.",
		}),
		ready: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "recoverpasscode_ready",
			Help: "1 when the worker takes jobs (NATS connected, streams set up, token available).",
		}),
	}
	reg.MustRegister(m.jobs, m.dlq, m.graphCalls, m.graphLatency, m.rateWait, m.tenantPaused, m.learned, m.held,
		m.pauses, m.inFlight, m.pending, m.redelivered, m.tokenErrors, m.auditLost, m.ready,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// OnScrape adds f to what runs before each scrape, to sample state that
// is cheaper to read on demand than to track (readiness, consumer lag).
func (m *Metrics) OnScrape(f func(ctx context.Context)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.samplers = append(m.samplers, f)
}

// Handler serves the registry in the Prometheus text format, sampling
// first.
func (m *Metrics) Handler(reg *prometheus.Registry) http.Handler {
	prom := promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m.mu.Lock()
		samplers := append([]func(context.Context){}, m.samplers...)
		m.mu.Unlock()
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		for _, f := range samplers {
			f(ctx)
		}
		prom.ServeHTTP(w, r)
	})
}

// JobFinished counts a finished job, and its dead letter if it has one.
func (m *Metrics) JobFinished(status, source string, deadLettered bool) {
	m.jobs.WithLabelValues(status, source).Inc()
	if deadLettered {
		m.dlq.WithLabelValues(source).Inc()
	}
}

// GraphCall records one Graph call's status and latency.
func (m *Metrics) GraphCall(status int, latency time.Duration) {
	m.graphCalls.WithLabelValues(strconv.Itoa(status)).Inc()
	if status != 0 {
		m.graphLatency.Observe(latency.Seconds())
	}
}

// RateLimitWait records a wait for the shared limit.
func (m *Metrics) RateLimitWait(d time.Duration) { m.rateWait.Observe(d.Seconds()) }

// Paused counts a pause this worker set and shows the tenant paused until
// the pause ends.
func (m *Metrics) Paused(tenant string, until time.Time) {
	m.pauses.WithLabelValues(tenant).Inc()
	m.mu.Lock()
	defer m.mu.Unlock()
	if until.Before(m.pauseUntil[tenant]) {
		return
	}
	m.pauseUntil[tenant] = until
	m.tenantPaused.WithLabelValues(tenant).Set(1)
	time.AfterFunc(time.Until(until), func() {
		m.mu.Lock()
		defer m.mu.Unlock()
		if !time.Now().Before(m.pauseUntil[tenant]) {
			m.tenantPaused.WithLabelValues(tenant).Set(0)
		}
	})
}

// LearnedRate shows the learned budget of a tenant, in calls per window.
func (m *Metrics) LearnedRate(tenant string, calls float64) {
	m.learned.WithLabelValues(tenant).Set(calls)
}

// Held shows how many jobs of a source are held by its budget.
func (m *Metrics) Held(source string, jobs int) {
	m.held.WithLabelValues(source).Set(float64(jobs))
}

// InFlight adds delta to the jobs in flight.
func (m *Metrics) InFlight(delta float64) { m.inFlight.Add(delta) }

// Consumer records the sampled state of the jobs consumer.
func (m *Metrics) Consumer(pending, redelivered uint64) {
	m.pending.Set(float64(pending))
	m.redelivered.Set(float64(redelivered))
}

// TokenError counts a failure to get a token.
func (m *Metrics) TokenError() { m.tokenErrors.Inc() }

// AuditLost counts an audit event given up on.
func (m *Metrics) AuditLost() { m.auditLost.Inc() }

// Ready records whether the worker takes jobs.
func (m *Metrics) Ready(ready bool) {
	v := 0.0
	if ready {
		v = 1
	}
	m.ready.Set(v)
}
