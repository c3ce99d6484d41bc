package metrics

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Follow holds the collectors of follow-through: what became of the
// actions on the devices. Its methods are safe for concurrent use.
type Follow struct {
	inProgress    prometheus.Gauge
	confirmations *prometheus.CounterVec
	toFinal       prometheus.Histogram
	reads         *prometheus.CounterVec
}

// NewFollow creates the follow-through collectors and registers them on
// reg.
func NewFollow(reg prometheus.Registerer) *Follow {
	f := &Follow{
		inProgress: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "recoverpasscode_follows_in_progress",
			Help: "Followed jobs whose device has not yet reported a final state, across the fleet (the follows stream's records), sampled at each scrape.",
		}),
		confirmations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "recoverpasscode_confirmations_total",
			Help: "Confirmations stored by this worker, by state (done, failed, canceled, notSupported, unknown).",
		}, []string{"state"}),
		toFinal: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "recoverpasscode_follow_seconds",
			Help:    "Time from the Graph call to the confirmation of its final state on the device.",
			Buckets: []float64{1, 10, 30, 60, 120, 300, 600, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 24 * 3600},
		}),
		reads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "recoverpasscode_follow_reads_total",
			Help: "Graph reads of followed devices, by HTTP status code (0: no response).",
		}, []string{"code"}),
	}
	// Every state (wire's) is exported from the start, at 0: increase()
	// over a series that appears at 1 misses that first confirmation, so
	// after each restart the share of unknown ones
	// (RecoverPasscodeConfirmationsUnknown) would be read wrong.
	for _, state := range []string{"done", "failed", "canceled", "notSupported", "unknown"} {
		f.confirmations.WithLabelValues(state)
	}
	reg.MustRegister(f.inProgress, f.confirmations, f.toFinal, f.reads)
	return f
}

// InProgress sets the followed jobs not yet confirmed.
func (f *Follow) InProgress(n uint64) { f.inProgress.Set(float64(n)) }

// Confirmed counts a confirmation of state, took after the call.
func (f *Follow) Confirmed(state string, took time.Duration) {
	f.confirmations.WithLabelValues(state).Inc()
	f.toFinal.Observe(took.Seconds())
}

// Read counts one read of a followed device.
func (f *Follow) Read(status int) { f.reads.WithLabelValues(strconv.Itoa(status)).Inc() }
