package ratelimit

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/recoverpasscode/recoverpasscode/devserver/devservertest"
)

const (
	testBucket = "test_limits"
	testApp    = "6f1c1a2e-8d0b-4c57-9a53-0b1f2a3c4d5e"
	tenantA    = "0a6b6a4e-1111-4c57-9a53-0b1f2a3c4d5e"
	tenantB    = "0b6b6a4e-2222-4c57-9a53-0b1f2a3c4d5e"
)

// fleet is a nats-server with a limits bucket and one Limiter per NATS
// connection, the way separate worker processes share a bucket.
type fleet struct {
	url      string
	kv       jetstream.KeyValue // on the first connection, for inspecting state
	limiters []*Limiter
}

// newFleet starts a server, creates the bucket with BucketConfig and opens
// n Limiters with cfg, each on its own connection. Everything is closed
// when the test ends.
func newFleet(tb testing.TB, n int, cfg Config) *fleet {
	tb.Helper()
	srv := devservertest.Start(tb)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	f := &fleet{url: srv.URL()}
	js := connect(tb, f.url)
	kv, err := js.CreateKeyValue(ctx, BucketConfig(testBucket, 1))
	if err != nil {
		tb.Fatalf("create bucket: %v", err)
	}
	f.kv = kv
	for i := range n {
		f.limiters = append(f.limiters, f.open(tb, i, cfg))
	}
	return f
}

// open adds a Limiter on a new connection, named after i.
func (f *fleet) open(tb testing.TB, i int, cfg Config) *Limiter {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	kv, err := connect(tb, f.url).KeyValue(ctx, testBucket)
	if err != nil {
		tb.Fatalf("open bucket: %v", err)
	}
	cfg.Owner = "limiter-" + string(rune('a'+i%26))
	l, err := New(ctx, kv, cfg)
	if err != nil {
		tb.Fatalf("new limiter: %v", err)
	}
	tb.Cleanup(func() {
		if err := l.Close(); err != nil {
			tb.Errorf("close limiter: %v", err)
		}
	})
	return l
}

// connect opens a NATS connection closed when the test ends.
func connect(tb testing.TB, url string) jetstream.JetStream {
	tb.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		tb.Fatalf("connect: %v", err)
	}
	tb.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		tb.Fatalf("jetstream: %v", err)
	}
	return js
}

// load is the outcome of runLoad: when each Wait returned, sorted.
type load struct {
	start  time.Time
	starts []time.Time
	errs   []error
}

// runLoad runs perLimiter goroutines on every limiter, each calling Wait
// for tenant in a loop and recording when it returned, until d has passed.
func runLoad(limiters []*Limiter, tenant string, perLimiter int, d time.Duration) load {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var (
		mu  sync.Mutex
		res = load{start: time.Now()}
		wg  sync.WaitGroup
	)
	for _, l := range limiters {
		for range perLimiter {
			wg.Go(func() {
				for {
					_, err := l.Wait(ctx, tenant)
					now := time.Now()
					mu.Lock()
					if err == nil {
						res.starts = append(res.starts, now)
					} else if ctx.Err() == nil {
						res.errs = append(res.errs, err)
					}
					mu.Unlock()
					if err != nil {
						return
					}
				}
			})
		}
	}
	wg.Wait()
	slices.SortFunc(res.starts, func(a, b time.Time) int { return a.Compare(b) })
	return res
}

// maxInWindow is the most starts inside any half-open window [t, t+per).
// The busiest window can always be taken to begin at a start.
func maxInWindow(starts []time.Time, per time.Duration) int {
	best, j := 0, 0
	for i := range starts {
		for j < len(starts) && starts[j].Before(starts[i].Add(per)) {
			j++
		}
		best = max(best, j-i)
	}
	return best
}

// countIn is the number of starts in [from, to).
func countIn(starts []time.Time, from, to time.Time) int {
	n := 0
	for _, s := range starts {
		if !s.Before(from) && s.Before(to) {
			n++
		}
	}
	return n
}

// steadyShare is the achieved rate in the steady state as a share of the
// allowed one: per divided by the mean time between a start and the start
// n places later, which a perfect sliding window makes exactly per.
func steadyShare(starts []time.Time, n int, per time.Duration) float64 {
	if len(starts) <= n {
		return 0
	}
	var total time.Duration
	for i := n; i < len(starts); i++ {
		total += starts[i].Sub(starts[i-n])
	}
	mean := total / time.Duration(len(starts)-n)
	return float64(per) / float64(mean)
}

// sumStats adds up the Stats of limiters.
func sumStats(limiters []*Limiter) Stats {
	var s Stats
	for _, l := range limiters {
		st := l.Stats()
		s.Waits += st.Waits
		s.Granted += st.Granted
		s.Discarded += st.Discarded
		s.KVOps += st.KVOps
		s.Conflicts += st.Conflicts
		s.Held += st.Held
	}
	return s
}

// eventually fails the test unless cond holds within d, checking it every
// few milliseconds.
func eventually(tb testing.TB, d time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(d)
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %s waiting for %s", d, what)
		}
		<-tick.C
	}
}

// takeAll starts n goroutines at once, spread over limiters in turn, each
// calling Wait once for tenant, and returns when each Wait returned,
// sorted. The deadline only ends a stuck Limiter.
func takeAll(limiters []*Limiter, tenant string, n int) load {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var (
		mu  sync.Mutex
		res = load{start: time.Now()}
		wg  sync.WaitGroup
	)
	for i := range n {
		l := limiters[i%len(limiters)]
		wg.Go(func() {
			_, err := l.Wait(ctx, tenant)
			now := time.Now()
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				res.errs = append(res.errs, err)
				return
			}
			res.starts = append(res.starts, now)
		})
	}
	wg.Wait()
	slices.SortFunc(res.starts, func(a, b time.Time) int { return a.Compare(b) })
	return res
}
