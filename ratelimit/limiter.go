package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/recoverpasscode/recoverpasscode/clock"
)

// ErrClosed is returned by Wait and Pause once Close has been called,
// including to calls that were blocked at the time.
var ErrClosed = errors.New("ratelimit: limiter closed")

// Limiter paces calls per (app, tenant) across every process that shares
// its bucket. It is safe for concurrent use by any number of goroutines;
// Close ends it.
type Limiter struct {
	kv     jetstream.KeyValue
	cfg    Config
	app    string        // key token of cfg.App
	window time.Duration // Rate.Per + Margin: the window actually enforced
	clock  *clock.Clock  // the server's time, for every stamp
	log    zerolog.Logger

	ctx     context.Context // lives until Close; bounds background work
	cancel  context.CancelFunc
	watcher jetstream.KeyWatcher
	wg      sync.WaitGroup // the bucket watch and the fetch goroutines
	stats   counters
	// writeRTT tracks recent window-log write latency (rising at once,
	// decaying slowly), so that permits stay valid long enough to arrive
	// when the KV is slow (a loaded host, a cluster election).
	writeRTT atomic.Int64
	// sendGap tracks the recent worst time from Wait letting a call go to
	// the call being written (see Sent).
	sendGap atomic.Int64
	// least tracks the least time from a call being written to its
	// answer over the last leastSpan (see Answered).
	least leastFilter
	// answerMean tracks the mean time from a call being written to its
	// answer (a moving average), for a cold tenant's slow start.
	answerMean atomic.Int64

	mu        sync.Mutex
	closed    bool
	tenants   map[string]*tenant     // by tenant token
	pauses    map[string]pause       // by tenant token, as last seen
	budgets   map[string]budgetState // learned budgets by tenant token, as last seen
	pauseWake chan struct{}          // closed and replaced whenever pauses change
}

// Stats counts what a Limiter has done since New. The counts only grow.
type Stats struct {
	// Waits is the number of Wait calls that let a call start.
	Waits uint64
	// Granted is the number of permits the bucket granted this Limiter.
	Granted uint64
	// Discarded is the number of granted permits never used: they expired
	// first (their waiters gave up, or the grant arrived late), or a pause
	// arrived first.
	Discarded uint64
	// KVOps is the number of bucket calls (get, create, update); updates
	// delivered by the watch are not calls and are not counted.
	KVOps uint64
	// Conflicts is the number of updates that lost a race with another
	// writer and were retried.
	Conflicts uint64
	// Moved is the number of permits whose call was written after the
	// permit's stamp, and whose stamp was therefore moved (see Wrote).
	Moved uint64
	// Held is the number of times calls were waiting and the window or
	// the pacing had no permit for them yet, so that they waited for time
	// to pass (not for a KV round trip). An idle tenant's first burst
	// holds nothing.
	Held uint64
}

// counters backs Stats.
type counters struct {
	waits, granted, discarded, kvOps, conflicts, moved, held atomic.Uint64
}

// New returns a Limiter for cfg.App on the bucket kv, which should be
// created with BucketConfig. It measures its clock against the server's
// (or logs why it could not yet), starts watching the bucket for this app's pauses and window logs and
// returns once it has read the pauses already in force, or with ctx's
// error. Close releases the watch; the bucket and its connection stay the
// caller's.
func New(ctx context.Context, kv jetstream.KeyValue, cfg Config) (*Limiter, error) {
	if kv == nil {
		return nil, errors.New("ratelimit: new: a KeyValue bucket is required")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if cfg.Clock == nil {
		var err error
		if cfg.Clock, err = clock.New(clock.Config{KV: kv, Key: clock.Key(cfg.Owner)}); err != nil {
			return nil, fmt.Errorf("ratelimit: new: %w", err)
		}
	}
	// Measure the clock now, so that the first grant need not; a failure
	// here (a cluster electing a leader) is only logged, since every grant
	// measures first while no measurement exists.
	clockErr := cfg.Clock.Fresh(ctx)
	base, cancel := context.WithCancel(context.Background())
	l := &Limiter{
		kv:        kv,
		cfg:       cfg,
		app:       keyToken(cfg.App),
		window:    cfg.Rate.Per + cfg.Margin,
		clock:     cfg.Clock,
		log:       cfg.Logger.With().Str("component", "ratelimit").Str("bucket", kv.Bucket()).Logger(),
		ctx:       base,
		cancel:    cancel,
		tenants:   make(map[string]*tenant),
		pauses:    make(map[string]pause),
		budgets:   make(map[string]budgetState),
		pauseWake: make(chan struct{}),
	}
	if err := l.watchBucket(ctx); err != nil {
		cancel()
		return nil, err
	}
	l.log.Info().Str("rate", cfg.Rate.String()).Str("owner", cfg.Owner).Msg("rate limiter started")
	if clockErr != nil {
		l.log.Warn().Err(clockErr).Msg("could not measure the local clock against the NATS server's yet; permits wait for it")
	}
	l.noteClock()
	return l, nil
}

// now is the server's time, on which every stamp is kept.
func (l *Limiter) now() time.Time { return l.clock.Now() }

// noteClock logs the measured offset of the local clock, as a warning when
// it exceeds the Margin: the Limiter corrects for it, but other things on
// the host (logs, certificates, tokens) do not.
func (l *Limiter) noteClock() {
	m, ok := l.clock.Measured()
	if !ok {
		return
	}
	ev := l.log.Debug()
	if m.Offset > l.cfg.Margin || -m.Offset > l.cfg.Margin {
		ev = l.log.Warn()
	}
	ev.Dur("offset", m.Offset).Dur("uncertainty", m.Uncertainty).
		Msg("local clock measured against the NATS server's; permits and pauses use the server's")
}

// Wait blocks until this process may start one call for (App, tenantID)
// and returns how long it blocked. It is Take for a caller that cannot
// tell when its call was written; see Take.
func (l *Limiter) Wait(ctx context.Context, tenantID string) (waited time.Duration, err error) {
	p, err := l.Take(ctx, tenantID)
	return p.Waited, err
}

// Permit is one call that Take let go. Pass it to Wrote once the call
// has been written to the network, to Answered when its answer begins to
// arrive, and to Ended when the call is over (see WithTrace).
type Permit struct {
	// Waited is how long Take blocked.
	Waited time.Duration
	// use is nil for an unlimited rate: there is nothing to correct.
	use *permitUse
}

// permitUse is what Wrote and Answered need to know of a Permit.
type permitUse struct {
	t     *tenant
	given time.Time // local clock, when Take returned

	mu    sync.Mutex
	stamp int64       // the Until the window log holds for it, once moved
	sent  time.Time   // local clock, when Wrote was told; zero before
	done  bool        // Answered or Ended was told
	keep  *time.Timer // moves the stamp along while the call is unanswered
}

// Take blocks until this process may start one call for (App,
// tenantID) and returns the permit. It first waits out any pause of the
// tenant, then takes a permit from the shared window (unless the rate is
// unlimited). The call should start at once: a permit is only good for
// Config.Validity after it was granted, and Take discards one that is
// older and waits for another. A call written later than the permit's
// stamp in the window log still keeps the bound if the caller reports it
// with Wrote.
//
// Take returns ctx.Err() promptly when ctx ends, ErrClosed after Close,
// and a wrapped bucket error when the bucket cannot be read or written;
// other tenants are never held up by one tenant's window or pause.
func (l *Limiter) Take(ctx context.Context, tenantID string) (Permit, error) {
	start := time.Now()
	if err := ctx.Err(); err != nil {
		return Permit{}, err
	}
	t, err := l.tenant(tenantID)
	if err != nil {
		return Permit{}, err
	}
	var s slot
	for {
		if err := l.waitPause(ctx, t.token); err != nil {
			return Permit{Waited: time.Since(start)}, err
		}
		if l.cfg.Rate.Unlimited() {
			break
		}
		if s, err = l.acquire(ctx, t); err != nil {
			return Permit{Waited: time.Since(start)}, err
		}
		now := l.now()
		if _, paused := l.pausedUntil(t.token, now); paused || now.After(s.until) {
			l.stats.discarded.Add(1)
			continue
		}
		break
	}
	l.stats.waits.Add(1)
	p := Permit{Waited: time.Since(start)}
	if !l.cfg.Rate.Unlimited() {
		p.use = &permitUse{t: t, given: time.Now(), stamp: s.stamp}
	}
	return p, nil
}

// Stats returns the counts so far. It is safe to call at any time.
func (l *Limiter) Stats() Stats {
	return Stats{
		Waits:     l.stats.waits.Load(),
		Granted:   l.stats.granted.Load(),
		Discarded: l.stats.discarded.Load(),
		KVOps:     l.stats.kvOps.Load(),
		Conflicts: l.stats.conflicts.Load(),
		Moved:     l.stats.moved.Load(),
		Held:      l.stats.held.Load(),
	}
}

// Close stops the bucket watch and every background fetch, makes blocked
// and later Wait and Pause calls return ErrClosed, and waits for its
// goroutines to end. It does not close the bucket's connection. Calling it
// again does nothing.
func (l *Limiter) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	for _, t := range l.tenants {
		t.fail(ErrClosed)
	}
	l.mu.Unlock()
	// Stop the watch before cancelling l.ctx: the watch was started on
	// l.ctx, and nats.go stops it itself when that ends, so cancelling
	// first raced two stops, and the loser deleting the watch's consumer
	// found it gone.
	err := stopWatch(l.watcher)
	l.cancel()
	l.wg.Wait()
	if err != nil {
		return fmt.Errorf("ratelimit: close: stop bucket watch: %w", err)
	}
	l.log.Info().Msg("rate limiter closed")
	return nil
}

// stopWatch stops w. A watch that is stopped already counts as stopped:
// its connection closed, its subscription gone, or its consumer, which the
// server may remove on its own (an ephemeral consumer that lost its
// server), already deleted.
func stopWatch(w jetstream.KeyWatcher) error {
	err := w.Stop()
	switch {
	case err == nil,
		errors.Is(err, nats.ErrConnectionClosed),
		errors.Is(err, nats.ErrBadSubscription),
		errors.Is(err, nats.ErrConsumerNotFound):
		return nil
	}
	return err
}

// tenant returns the local state of tenantID, creating it on first use.
// States are kept until Close: callers bound tenants to a configured list.
func (l *Limiter) tenant(tenantID string) (*tenant, error) {
	if tenantID == "" {
		return nil, errors.New("ratelimit: a tenant id is required")
	}
	token := keyToken(tenantID)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, ErrClosed
	}
	t, ok := l.tenants[token]
	if !ok {
		t = &tenant{
			id:    tenantID,
			token: token,
			key:   windowKey(l.app, token),
			wake:  make(chan struct{}, 1),
			fresh: make(chan struct{}),
		}
		l.tenants[token] = t
	}
	return t, nil
}

// acquire hands the caller one permit for t, from the local pool if one is
// left there, else by queueing for the tenant's fetch goroutine. It returns
// the permit's slot: the latest time it may be used, and its stamp.
func (l *Limiter) acquire(ctx context.Context, t *tenant) (slot, error) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return slot{}, ErrClosed
	}
	s, ok, expired := t.take(l.now())
	l.stats.discarded.Add(uint64(expired))
	if ok {
		l.mu.Unlock()
		return s, nil
	}
	w := &waiter{done: make(chan struct{})}
	t.queue = append(t.queue, w)
	if !t.fetching {
		t.fetching = true
		l.wg.Add(1)
		go l.fetch(t)
	}
	l.mu.Unlock()

	select {
	case <-w.done:
		return w.slot, w.err
	case <-ctx.Done():
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	select {
	case <-w.done:
		// Granted while giving up: let the next waiter have the permit.
		if w.err == nil {
			t.putBack(w.slot)
		}
	default:
		t.leave(w)
	}
	return slot{}, ctx.Err()
}

// waitPause blocks while the tenant with token is paused, re-checking
// whenever the pauses change, since a pause may be extended or lifted.
func (l *Limiter) waitPause(ctx context.Context, token string) error {
	for {
		l.mu.Lock()
		closed, until, wake := l.closed, l.pauses[token].until, l.pauseWake
		l.mu.Unlock()
		if closed {
			return ErrClosed
		}
		d := until.Sub(l.now())
		if d <= 0 {
			return nil
		}
		timer := time.NewTimer(d)
		select {
		case <-ctx.Done():
			timer.Stop()
			return ctx.Err()
		case <-l.ctx.Done():
			timer.Stop()
			return ErrClosed
		case <-wake:
		case <-timer.C:
		}
		timer.Stop()
	}
}

// idle sleeps for d, or until a or b is closed or signalled, or the
// Limiter closes. Nil channels are never ready.
func (l *Limiter) idle(d time.Duration, a, b <-chan struct{}) {
	if d <= 0 {
		return
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
	case <-a:
	case <-b:
	case <-l.ctx.Done():
	}
}
