package batch

import (
	"time"

	"github.com/recoverpasscode/recoverpasscode/ratelimit"
)

// rateWindow is how far back the observed rate looks: long enough to
// smooth the rate limit's bursts, short enough to follow a change.
const rateWindow = 30 * time.Second

// minRateSpan is the shortest span over which a rate is believed.
const minRateSpan = 2 * time.Second

// Snapshot is the state of a batch at one moment, for rendering.
type Snapshot struct {
	At time.Time
	// Total is the number of rows; Done those with a result.
	Total, Done int
	// Succeeded and NotSucceeded split Done.
	Succeeded, NotSucceeded int
	// Elapsed is the time since the progress started.
	Elapsed time.Duration
	// Rate is the observed results per second over the last 30s; 0 until
	// known.
	Rate float64
	// Limit is the results per second the rate limit allows this batch
	// (the limit times its tenants); 0 for unlimited.
	Limit float64
	// ETA is the estimated time left; negative when unknown.
	ETA time.Duration
}

// Percent is Done as a percentage of Total.
func (s Snapshot) Percent() float64 {
	if s.Total == 0 {
		return 100
	}
	return 100 * float64(s.Done) / float64(s.Total)
}

// Progress turns counts seen over time into snapshots with a rate and an
// estimated time left. It is not safe for concurrent use.
type Progress struct {
	total   int
	limit   float64
	rate    ratelimit.Rate
	tenants int
	start   time.Time
	first   int // rows done at the start
	samples []sample
}

type sample struct {
	at   time.Time
	done int
}

// NewProgress starts the progress of total rows at now, with the rows done
// already (results of an earlier run, which do not count for the rate).
// The rate limit, per tenant, and the number of tenants bound the estimate:
// the workers cannot go faster than rate × tenants.
func NewProgress(total int, rate ratelimit.Rate, tenants int, now time.Time, done int) *Progress {
	p := &Progress{total: total, rate: rate, tenants: max(tenants, 1), start: now, first: done, samples: []sample{{now, done}}}
	if !rate.Unlimited() && rate.Per > 0 {
		p.limit = float64(rate.N) / rate.Per.Seconds() * float64(p.tenants)
	}
	return p
}

// Update records the counts at now and returns the snapshot.
func (p *Progress) Update(now time.Time, c Counts) Snapshot {
	done := c.Done()
	p.samples = append(p.samples, sample{now, done})
	// Keep the newest sample at least rateWindow old, and those after it.
	for len(p.samples) > 2 && now.Sub(p.samples[1].at) >= rateWindow {
		p.samples = p.samples[1:]
	}
	s := Snapshot{
		At: now, Total: p.total, Done: done,
		Succeeded: c.Succeeded, NotSucceeded: c.NotSucceeded(),
		Elapsed: now.Sub(p.start), Limit: p.limit, ETA: -1,
	}
	oldest := p.samples[0]
	if span := now.Sub(oldest.at); span >= minRateSpan {
		s.Rate = float64(done-oldest.done) / span.Seconds()
	}
	s.ETA = estimate(p.total-done, s.Rate, p.limit)
	if s.ETA >= 0 && done < p.total {
		s.ETA = max(s.ETA, p.windowBound().Sub(now))
	}
	return s
}

// windowBound is the earliest the rows can be done under a sliding-window
// limit of N calls per window and tenant: the k-th call cannot start before
// floor((k-1)/N) windows have passed. It matters for small batches, whose
// first N calls go at once and whose rest wait for the window to move.
func (p *Progress) windowBound() time.Time {
	if p.limit == 0 {
		return time.Time{}
	}
	calls := p.total - p.first
	if calls <= 0 {
		return time.Time{}
	}
	windows := (calls - 1) / (p.rate.N * p.tenants)
	return p.start.Add(time.Duration(windows) * p.rate.Per)
}

// estimate is the time left for remaining rows at the observed rate,
// capped by the rate limit (results of earlier jobs may come faster than
// the limit; the rows still to do may not); before a rate is observed, the
// limit alone; unknown when neither is known.
func estimate(remaining int, observed, limit float64) time.Duration {
	if remaining <= 0 {
		return 0
	}
	r := observed
	if limit > 0 && (r <= 0 || r > limit) {
		r = limit
	}
	if r <= 0 {
		return -1
	}
	return time.Duration(float64(remaining) / r * float64(time.Second))
}
