package console

import (
	"context"
	"encoding/json"
	"net/http"
	"sort"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/recoverpasscode/recoverpasscode/queue"
	"github.com/recoverpasscode/recoverpasscode/quota"
	"github.com/recoverpasscode/recoverpasscode/ratelimit"
	"github.com/recoverpasscode/recoverpasscode/scan"
	"github.com/recoverpasscode/recoverpasscode/wire"
)

// Bounds of the overview.
const (
	// throughputMinutes is how far back the jobs-per-minute chart goes.
	throughputMinutes = 15
	// maxThroughputScan bounds the results the chart reads.
	maxThroughputScan = 200_000
	// overviewTTL is how long one reading of the overview serves every
	// viewer: the live view polls, and many viewers must not mean many
	// reads.
	overviewTTL = 2 * time.Second
)

// minute is one bar of the chart: the results stored in one minute.
type minute struct {
	At                          time.Time
	Succeeded, Failed, Rejected int
	Expired, Other              int
}

func (m minute) Total() int { return m.Succeeded + m.Failed + m.Rejected + m.Expired + m.Other }

// Bad counts the results that did not succeed.
func (m minute) Bad() int { return m.Failed + m.Rejected }

// overviewData is what the overview shows.
type overviewData struct {
	At         time.Time
	Minutes    []minute
	Peak       int
	LastMinute minute
	InFlight   int
	QueueDepth uint64
	DLQ        uint64
	Held       int
	Tenants    []ratelimit.TenantStatus
	Problems   []string
}

// PerMinute is the mean over the chart, in results per minute.
func (o overviewData) PerMinute() float64 {
	total := 0
	for _, m := range o.Minutes {
		total += m.Total()
	}
	return float64(total) / float64(max(len(o.Minutes), 1))
}

// collectOverview reads the overview, or returns the last reading if it is
// recent enough.
func (s *Server) collectOverview(ctx context.Context) overviewData {
	s.mu.Lock()
	if cached := s.overviewCache; cached != nil && time.Since(cached.At) < overviewTTL {
		s.mu.Unlock()
		return *cached
	}
	s.mu.Unlock()
	o := overviewData{At: time.Now()}
	problem := func(what string, err error) { o.Problems = append(o.Problems, what+": "+truncate(err.Error(), 160)) }
	if err := s.throughput(ctx, &o); err != nil {
		problem("results", err)
	}
	if cons, err := s.js.Consumer(ctx, s.names.JobsStream(), queue.ConsumerName); err != nil {
		problem("workers' consumer", err)
	} else if info, err := cons.Info(ctx); err != nil {
		problem("workers' consumer", err)
	} else {
		o.InFlight = info.NumAckPending
	}
	if n, err := s.streamMsgs(ctx, s.names.JobsStream()); err != nil {
		problem("jobs stream", err)
	} else {
		o.QueueDepth = n
	}
	if n, err := s.streamMsgs(ctx, s.names.DLQStream()); err != nil {
		problem("DLQ stream", err)
	} else {
		o.DLQ = n
	}
	if kv, err := s.limits(ctx); err != nil {
		problem("limits bucket", err)
	} else {
		if t, err := ratelimit.Status(ctx, kv, time.Now()); err != nil {
			problem("tenants", err)
		} else {
			o.Tenants = t
		}
		if counts, err := quota.New(s.js, kv, nil).Counts(ctx); err != nil {
			problem("held jobs", err)
		} else {
			for _, n := range counts {
				o.Held += n
			}
		}
	}
	s.mu.Lock()
	s.overviewCache = &o
	s.mu.Unlock()
	return o
}

// throughput counts the results stored in each of the last minutes.
func (s *Server) throughput(ctx context.Context, o *overviewData) error {
	now := time.Now().Truncate(time.Minute)
	start := now.Add(-(throughputMinutes - 1) * time.Minute)
	o.Minutes = make([]minute, throughputMinutes)
	for i := range o.Minutes {
		o.Minutes[i].At = start.Add(time.Duration(i) * time.Minute)
	}
	err := s.streams().Forward(ctx, scan.Range{Stream: s.names.ResultsStream(), Filter: s.names.ResultsWildcard(), StartTime: start, Max: maxThroughputScan}, func(m jetstream.Msg) bool {
		meta, err := m.Metadata()
		if err != nil {
			return true
		}
		i := int(meta.Timestamp.Sub(start) / time.Minute)
		if i < 0 || i >= len(o.Minutes) {
			return true
		}
		var res struct {
			Status wire.Status `json:"status"`
		}
		_ = json.Unmarshal(m.Data(), &res)
		b := &o.Minutes[i]
		switch res.Status {
		case wire.Succeeded:
			b.Succeeded++
		case wire.Failed:
			b.Failed++
		case wire.Rejected:
			b.Rejected++
		case wire.Expired:
			b.Expired++
		default:
			b.Other++
		}
		return true
	})
	for _, m := range o.Minutes {
		o.Peak = max(o.Peak, m.Total())
	}
	o.LastMinute = o.Minutes[len(o.Minutes)-1]
	return err
}

func (s *Server) streamMsgs(ctx context.Context, name string) (uint64, error) {
	st, err := s.js.Stream(ctx, name)
	if err != nil {
		return 0, err
	}
	info, err := st.Info(ctx)
	if err != nil {
		return 0, err
	}
	return info.State.Msgs, nil
}

// limits opens the limits bucket (learned budgets, pauses, held jobs).
func (s *Server) limits(ctx context.Context) (jetstream.KeyValue, error) {
	return s.js.KeyValue(ctx, s.names.LimitsBucket())
}

// bar is one bar of the chart with its heights in percent of the peak.
type bar struct {
	minute
	OK, Bad, Other int
}

// Bars are the chart's bars.
func (o overviewData) Bars() []bar {
	out := make([]bar, len(o.Minutes))
	peak := max(o.Peak, 1)
	for i, m := range o.Minutes {
		out[i] = bar{minute: m, OK: m.Succeeded * 100 / peak, Bad: m.Bad() * 100 / peak, Other: (m.Expired + m.Other) * 100 / peak}
	}
	return out
}

// sortedTenants orders tenants paused first, then by tenant.
func sortedTenants(t []ratelimit.TenantStatus) []ratelimit.TenantStatus {
	sort.SliceStable(t, func(i, k int) bool { return !t[i].PausedUntil.IsZero() && t[k].PausedUntil.IsZero() })
	return t
}

func (s *Server) overview(w http.ResponseWriter, r *http.Request, sess *session) {
	ctx, cancel := s.ctx(r)
	defer cancel()
	o := s.collectOverview(ctx)
	o.Tenants = sortedTenants(o.Tenants)
	s.render(w, r, sess, http.StatusOK, "overview", "Overview", o)
}

func (s *Server) overviewFragment(w http.ResponseWriter, r *http.Request, sess *session) {
	ctx, cancel := s.ctx(r)
	defer cancel()
	o := s.collectOverview(ctx)
	o.Tenants = sortedTenants(o.Tenants)
	s.renderFragment(w, sess, "overview", o)
}
