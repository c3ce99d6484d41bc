// Package clock tells the time by the NATS server's clock. The fleet's
// shared state holds absolute times written by different hosts: the rate
// limiter's window stamps and pauses, the idempotency leases. A host whose
// clock runs 2 s fast would see every other worker's stamps 2 s older than
// they are (and grant permits the window does not have, or take a lease
// over early); one running slow would write stamps that the others drop
// too soon. NTP keeps clocks within milliseconds, until it does not (a
// stopped daemon, a VM resumed from a snapshot, a container host with a
// bad RTC).
//
// A Clock therefore measures how far the local clock is from the server's,
// using the one timestamp every process already shares: JetStream stamps
// each stored message, so each KeyValue entry, with the time of the stream
// leader that stored it. Writing a probe key between two local readings
// brackets that stamp; the offset is the stamp less the midpoint, good to
// half the round trip. Now is the local clock corrected by the latest such
// offset, so every worker reads one clock, the server's, whatever its own
// says.
package clock

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/recoverpasscode/recoverpasscode/internal/timing"
)

// DefaultTolerance is the offset below which a clock counts as right:
// NTP keeps a well-run host within a few milliseconds of its servers.
const DefaultTolerance = 5 * time.Millisecond

// DefaultMaxAge is how old a measurement may be before Fresh measures
// again. Clocks drift by microseconds per second, so this is about noticing
// a clock that was stepped.
const DefaultMaxAge = 10 * time.Second

// Key is a probe key for the process named name: "clock.<name>", the name
// as it is when it is made of [-_a-zA-Z0-9], else "=" and its unpadded
// base64url, since keys allow only [-/_=.a-zA-Z0-9].
func Key(name string) string {
	plain := name != ""
	for i := range len(name) {
		switch c := name[i]; {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_':
		default:
			plain = false
		}
	}
	if plain {
		return "clock." + name
	}
	return "clock.=" + base64.RawURLEncoding.EncodeToString([]byte(name))
}

// Config configures a Clock.
type Config struct {
	// KV is the bucket whose entries' timestamps are the reference. Every
	// process that must agree on the time should use the same bucket.
	// Required.
	KV jetstream.KeyValue
	// Key is the probe key this process writes; no other process may write
	// it (use one naming the process). Required.
	Key string
	// Local is the local clock. Defaults to time.Now; tests inject a wrong
	// one.
	Local func() time.Time
	// MaxAge is how old a measurement may be before Fresh takes another.
	// Defaults to DefaultMaxAge.
	MaxAge time.Duration
	// Tolerance is the largest offset left uncorrected: hosts that NTP
	// keeps in step then read their own clocks exactly, instead of each
	// adding its own measurement noise. Defaults to DefaultTolerance; it
	// should be well under any margin the readers of the clock keep.
	Tolerance time.Duration
}

// Clock is the local clock corrected to the server's. It is safe for
// concurrent use.
type Clock struct {
	cfg Config

	measuring sync.Mutex // one measurement at a time

	mu       sync.Mutex
	m        Measurement
	measured bool
	applied  time.Duration // m.Offset, or zero within Tolerance
}

// Measurement is one comparison of the local clock with the server's.
type Measurement struct {
	// Offset is the server's time less the local time: add it to a local
	// reading to get the server's time.
	Offset time.Duration
	// Uncertainty bounds the error of Offset: half the probe's round trip.
	Uncertainty time.Duration
	// At is when it was taken, by the local clock.
	At time.Time
}

// New returns a Clock on cfg.KV. It has no measurement until Sync or Fresh
// takes one; until then Now is the local clock.
func New(cfg Config) (*Clock, error) {
	switch {
	case cfg.KV == nil:
		return nil, errors.New("clock: a KeyValue bucket is required")
	case cfg.Key == "":
		return nil, errors.New("clock: a probe key is required")
	}
	if cfg.Local == nil {
		cfg.Local = time.Now
	}
	if cfg.MaxAge <= 0 {
		cfg.MaxAge = DefaultMaxAge
	}
	if cfg.Tolerance <= 0 {
		cfg.Tolerance = DefaultTolerance
	}
	return &Clock{cfg: cfg}, nil
}

// Now is the server's time as this process best knows it: the local clock
// plus the latest measured offset (nothing before the first measurement,
// or while the offset is within Tolerance). It never blocks.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	offset := c.applied
	c.mu.Unlock()
	return c.cfg.Local().Add(offset)
}

// Local is the uncorrected local clock, Config.Local.
func (c *Clock) Local() time.Time { return c.cfg.Local() }

// ToServer turns a time read on the local clock (a deadline computed from
// Local, or from time.Now where Local is the real clock) into the server's
// time, by the latest offset.
func (c *Clock) ToServer(local time.Time) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return local.Add(c.applied)
}

// ToLocal turns a time of the server's clock into the local clock's.
func (c *Clock) ToLocal(server time.Time) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return server.Add(-c.applied)
}

// Measured returns the latest measurement, and false if there is none yet.
func (c *Clock) Measured() (Measurement, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m, c.measured
}

// Fresh makes sure the measurement is at most MaxAge old, taking one if it
// is not. When that fails it keeps the older one (a clock does not drift
// far in the length of a NATS outage) and returns nil; it returns an error
// only while no measurement has ever succeeded.
func (c *Clock) Fresh(ctx context.Context) error {
	if c.fresh() {
		return nil
	}
	c.measuring.Lock()
	defer c.measuring.Unlock()
	if c.fresh() {
		return nil // measured while we waited
	}
	_, err := c.sync(ctx)
	if _, ok := c.Measured(); ok {
		return nil
	}
	return err
}

// fresh reports whether a measurement younger than MaxAge exists.
func (c *Clock) fresh() bool {
	m, ok := c.Measured()
	return ok && c.cfg.Local().Sub(m.At) < c.cfg.MaxAge
}

// Sync measures the offset now and returns the measurement.
func (c *Clock) Sync(ctx context.Context) (Measurement, error) {
	c.measuring.Lock()
	defer c.measuring.Unlock()
	return c.sync(ctx)
}

// readBackTries bounds how often readBack asks again for a write that a
// replica has not applied yet, readBackWait apart.
const (
	readBackTries = 50
	readBackWait  = 10 * time.Millisecond
)

// readBack reads the probe key at revision rev. A bucket's reads may be
// answered by any replica (KV buckets allow direct gets), and one that has
// not applied the write yet answers with the key missing or older; JetStream
// offers no notice of a replica catching up, so it asks again.
func (c *Clock) readBack(ctx context.Context, rev uint64) (jetstream.KeyValueEntry, error) {
	for try := 1; ; try++ {
		entry, err := c.cfg.KV.Get(ctx, c.cfg.Key)
		switch {
		case err == nil && entry.Revision() == rev:
			return entry, nil
		case err == nil && entry.Revision() > rev:
			return nil, fmt.Errorf("clock: %s was written by another process too (revision %d, ours %d); give each its own key", c.cfg.Key, entry.Revision(), rev)
		case err != nil && !errors.Is(err, jetstream.ErrKeyNotFound):
			return nil, fmt.Errorf("clock: read %s: %w", c.cfg.Key, err)
		case try == readBackTries:
			return nil, fmt.Errorf("clock: read %s: revision %d still not readable after %d tries", c.cfg.Key, rev, try)
		}
		if !timing.Sleep(ctx, readBackWait) {
			return nil, fmt.Errorf("clock: read %s: %w", c.cfg.Key, ctx.Err())
		}
	}
}

// sync writes the probe key between two local readings and reads back the
// time the server stamped it with. The server stamped it after the first
// reading and before its acknowledgement arrived, so the midpoint is off
// by at most half the round trip.
func (c *Clock) sync(ctx context.Context) (Measurement, error) {
	sent := c.cfg.Local()
	rev, err := c.cfg.KV.Put(ctx, c.cfg.Key, strconv.AppendInt(nil, sent.UnixMilli(), 10))
	acked := c.cfg.Local()
	if err != nil {
		return Measurement{}, fmt.Errorf("clock: write %s: %w", c.cfg.Key, err)
	}
	entry, err := c.readBack(ctx, rev)
	if err != nil {
		return Measurement{}, err
	}
	half := acked.Sub(sent) / 2
	m := Measurement{Offset: entry.Created().Sub(sent.Add(half)), Uncertainty: half, At: acked}
	applied := m.Offset
	if applied <= c.cfg.Tolerance && applied >= -c.cfg.Tolerance {
		applied = 0
	}
	c.mu.Lock()
	c.m, c.measured, c.applied = m, true, applied
	c.mu.Unlock()
	return m, nil
}
