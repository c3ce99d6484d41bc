package ratelimit

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/recoverpasscode/recoverpasscode/clock"
)

// Config configures a Limiter. Only App is required.
type Config struct {
	// App is the application (client) id the calls are made as. It is part
	// of every key, so two apps in one tenant have separate limits, as
	// Intune counts them. Required.
	App string

	// Rate is the limit shared by every Limiter on the bucket for this App.
	// Every Limiter of the fleet must use the same Rate: each one prunes the
	// shared log to its own window, so a mix (during a rolling change) is
	// bounded only by the shorter window. Defaults to DefaultRate (200/20s);
	// use Unlimited for no limit.
	Rate Rate

	// Owner names this process in the state it writes to the bucket, for a
	// person reading the bucket. Defaults to the host name and process id.
	Owner string

	// Batch is the most permits one KV update grants. A grant never exceeds
	// the number of goroutines waiting in this process, so a larger Batch
	// saves round trips under load without hoarding permits when idle.
	// Defaults to max(1, N/20).
	Batch int

	// Validity is how long a granted permit may wait to be used. The log
	// records each permit at grant time + Validity, the latest moment it can
	// start a call, and a permit still unused then is discarded; see the
	// package documentation. It must comfortably exceed a KV round trip.
	// Defaults to Per/80, at least 25ms (but at most Per/20) and at most 250ms.
	Validity time.Duration

	// Margin lengthens the window this Limiter enforces beyond Rate.Per. It
	// absorbs what remains of clock skew between hosts once each is
	// corrected to the server's clock (half a KV round trip) and the
	// difference between when a call starts here and when Graph counts its
	// arrival. Defaults to min(Per/50, 100ms).
	Margin time.Duration

	// Burst is the most calls the fleet may start at once for a tenant,
	// out of Rate.N (scaled down with the learned rate). Below N, a
	// backlog's first window is paced: after the burst, permits come one
	// by one at the learned rate, so that a tenant whose real budget is lower
	// than the learned one is found out by a call or two, not by a burst
	// of 429s. Defaults to N: an idle fleet may use the whole window at
	// once.
	Burst int

	// OnBudget, when set, is called whenever this Limiter sees a tenant's
	// learned rate change (its own cut or growth, another Limiter's through
	// the watch, or the budget learned before it started), with the tenant
	// id as its key holds it (lowercased) and the calls per window the
	// fleet now allows itself. It must return quickly.
	OnBudget func(tenantID string, learned float64)

	// Clock is the time every window stamp and pause is read and written
	// on: the local clock corrected to the NATS server's (see package
	// clock), so that a host whose clock is off still keeps the fleet-wide
	// bound. Share one with the idempotency Store of the same process.
	// Defaults to a Clock on the Limiter's own bucket, with probe key
	// clock.Key(Owner) and the real local clock.
	Clock *clock.Clock

	// Logger receives lifecycle events at info level and per-grant detail
	// at debug level. The zero Logger discards everything.
	Logger zerolog.Logger
}

// withDefaults returns c with every unset field filled in.
func (c Config) withDefaults() Config {
	if c.Rate == (Rate{}) {
		c.Rate = DefaultRate
	}
	if c.Owner == "" {
		host, err := os.Hostname()
		if err != nil {
			host = "unknown"
		}
		c.Owner = host + "-" + strconv.Itoa(os.Getpid())
	}
	if c.Batch == 0 {
		c.Batch = max(1, c.Rate.N/20)
	}
	if c.Burst == 0 || c.Burst > c.Rate.N {
		c.Burst = c.Rate.N
	}
	if c.Validity == 0 {
		// Short enough to waste little of a window (each permit's slot is
		// busy for Per+Margin+Validity), long enough for a KV round trip.
		c.Validity = min(max(c.Rate.Per/80, 25*time.Millisecond), c.Rate.Per/20, 250*time.Millisecond)
	}
	if c.Margin == 0 {
		c.Margin = min(c.Rate.Per/50, 100*time.Millisecond)
	}
	return c
}

// Ceiling is the share of Rate a fleet with a steady backlog can reach
// under c (defaults filled in): each permit keeps its slot in the log for
// Per+Margin+Validity, so at most Per/(Per+Margin+Validity) of the allowed
// calls start. A Limiter that measures slow KV writes lengthens Validity
// and lowers it further. An unlimited Rate has ceiling 1.
func (c Config) Ceiling() float64 {
	c = c.withDefaults()
	if c.Rate.Unlimited() {
		return 1
	}
	return float64(c.Rate.Per) / float64(c.Rate.Per+c.Margin+c.Validity)
}

// Validate reports the first setting a Limiter cannot work with. It checks
// c as given, after filling in defaults.
func (c Config) Validate() error {
	c = c.withDefaults()
	if c.App == "" {
		return errors.New("ratelimit: config: App (the application's client id) is required")
	}
	if err := c.Rate.validate(); err != nil {
		return fmt.Errorf("ratelimit: config: rate %s: %w", c.Rate, err)
	}
	if c.Rate.Unlimited() {
		return nil
	}
	switch {
	case c.Batch < 0:
		return fmt.Errorf("ratelimit: config: Batch %d must not be negative", c.Batch)
	case c.Burst < 0:
		return fmt.Errorf("ratelimit: config: Burst %d must not be negative", c.Burst)
	case c.Validity < 0 || c.Validity >= c.Rate.Per:
		return fmt.Errorf("ratelimit: config: Validity %s must be positive and shorter than the window %s", c.Validity, c.Rate.Per)
	case c.Validity == 0:
		return fmt.Errorf("ratelimit: config: window %s is too short to derive a Validity; set one", c.Rate.Per)
	case c.Margin < 0:
		return fmt.Errorf("ratelimit: config: Margin %s must not be negative", c.Margin)
	}
	return nil
}

// BucketTTL is how long the bucket keeps a key after its last update. The
// state of a tenant that stopped calling ages out after it, and it bounds
// the longest pause the bucket can hold.
const BucketTTL = 24 * time.Hour

// BucketConfig is the KeyValue bucket the worker creates for Limiters (in
// production "recoverpasscode_limits"). It keeps one revision per key, since
// only the latest state matters, on file storage, so that pauses survive a
// restart of the servers, and lets idle state age out after BucketTTL.
// Replicas below one mean one.
func BucketConfig(bucket string, replicas int) jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{
		Bucket:      bucket,
		Description: "recoverpasscode: shared rate-limit windows and cluster-wide pauses",
		History:     1,
		TTL:         BucketTTL,
		Storage:     jetstream.FileStorage,
		Replicas:    max(1, replicas),
	}
}
