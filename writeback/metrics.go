package writeback

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// MetricNames are the names of the delivery metrics, part of the operating
// contract: deploy/prometheus alerts use them.
var MetricNames = []string{
	"recoverpasscode_deliveries_total",
	"recoverpasscode_delivery_attempts_total",
	"recoverpasscode_delivery_latency_seconds",
	"recoverpasscode_delivery_oldest_undelivered_seconds",
	"recoverpasscode_delivery_failures_kept",
	"recoverpasscode_delivery_endpoint_disabled",
}

// metrics holds the delivery collectors. Its methods are safe for
// concurrent use.
type metrics struct {
	deliveries *prometheus.CounterVec
	attempts   *prometheus.CounterVec
	latency    *prometheus.HistogramVec
	oldest     *prometheus.GaugeVec
	kept       *prometheus.GaugeVec
	disabled   *prometheus.GaugeVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	labels := []string{"source", "endpoint"}
	m := &metrics{
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "recoverpasscode_deliveries_total",
			Help: "Deliveries of results (and confirmations of followed jobs) to write-back endpoints that ended, by source, endpoint and outcome (delivered, or why it was kept as failed: rejected, gone, exhausted, no-ticket, invalid-ticket, not-found, ambiguous, not-a-result, result-expired).",
		}, append(labels, "outcome")),
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "recoverpasscode_delivery_attempts_total",
			Help: "Attempts at delivering a result, by source, endpoint and what they got (2xx, 3xx, 4xx, 5xx, timeout, error, refused: a ticket no request could serve).",
		}, append(labels, "result")),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "recoverpasscode_delivery_latency_seconds",
			Help:    "Time from a result being stored to its delivery (the endpoint's 2xx), retries included.",
			Buckets: prometheus.ExponentialBuckets(0.05, 4, 12),
		}, labels),
		oldest: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "recoverpasscode_delivery_oldest_undelivered_seconds",
			Help: "Age of the oldest result not yet delivered to the endpoint nor given up (0: none), sampled.",
		}, labels),
		kept: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "recoverpasscode_delivery_failures_kept",
			Help: "Failed deliveries kept for the endpoint, to list and redeliver (enqueue deliveries), sampled.",
		}, labels),
		disabled: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "recoverpasscode_delivery_endpoint_disabled",
			Help: "1 while the endpoint is disabled after answering 410 Gone.",
		}, labels),
	}
	if reg != nil {
		reg.MustRegister(m.deliveries, m.attempts, m.latency, m.oldest, m.kept, m.disabled)
	}
	return m
}

// endpointMetrics are one endpoint's series.
type endpointMetrics struct {
	m                *metrics
	source, endpoint string
}

func (m *metrics) endpoint(source, endpoint string) endpointMetrics {
	e := endpointMetrics{m: m, source: source, endpoint: endpoint}
	// Every series exists from the start, so that rate() and alerts see
	// the first delivery and the first failure.
	e.m.deliveries.WithLabelValues(source, endpoint, string(OutcomeDelivered))
	e.m.oldest.WithLabelValues(source, endpoint)
	e.m.kept.WithLabelValues(source, endpoint)
	e.m.disabled.WithLabelValues(source, endpoint)
	return e
}

func (e endpointMetrics) attempt(a attempt) {
	e.m.attempts.WithLabelValues(e.source, e.endpoint, a.class()).Inc()
}

func (e endpointMetrics) ended(o Outcome) {
	e.m.deliveries.WithLabelValues(e.source, e.endpoint, string(o)).Inc()
}

func (e endpointMetrics) delivered(latency time.Duration) {
	e.ended(OutcomeDelivered)
	e.m.latency.WithLabelValues(e.source, e.endpoint).Observe(latency.Seconds())
}

func (e endpointMetrics) sample(oldest time.Duration, kept int) {
	e.m.oldest.WithLabelValues(e.source, e.endpoint).Set(oldest.Seconds())
	e.m.kept.WithLabelValues(e.source, e.endpoint).Set(float64(kept))
}

func (e endpointMetrics) setDisabled(disabled bool) {
	v := 0.0
	if disabled {
		v = 1
	}
	e.m.disabled.WithLabelValues(e.source, e.endpoint).Set(v)
}
