package job

import (
	"errors"
	"fmt"
	"time"

	"github.com/rs/zerolog"

	"github.com/recoverpasscode/recoverpasscode/wire"
)

// The defaults of Config, written here once: the worker's flags and
// service.Config read them from here.
const (
	// DefaultMaxInlineWait is the longest wait a Handler spends holding a
	// job before handing it back.
	DefaultMaxInlineWait = 10 * time.Second
	// DefaultKeepAliveEvery is how often a held job's ack deadline and
	// lease are extended.
	DefaultKeepAliveEvery = 5 * time.Second
	// DefaultMaxDeliveries bounds the deliveries of one job message.
	DefaultMaxDeliveries = 50
	// DefaultBackoffInitial is the first delay between Graph attempts.
	DefaultBackoffInitial = 500 * time.Millisecond
	// DefaultBackoffMax caps one delay, including a server's Retry-After.
	DefaultBackoffMax = 60 * time.Second
	// DefaultMaxAttempts bounds the failed Graph calls of one delivery.
	DefaultMaxAttempts = 8
	// DefaultMaxElapsed bounds the time from a delivery's start to its last
	// retry.
	DefaultMaxElapsed = 15 * time.Minute
	// DefaultHoldRecheck is the longest a job held by its source's budget
	// waits before the budget, and an operator's release, are checked
	// again.
	DefaultHoldRecheck = 10 * time.Second
)

// Config configures a Handler. Graph, Tokens, Limiter, Ledger and Worker
// are required; every other field has a documented default, which a zero
// value selects.
type Config struct {
	// Graph performs the action. Required.
	Graph Recoverer
	// Tokens gets a tenant's token before each permit and refreshes it
	// after a 401. Required.
	Tokens Tokens
	// Limiter is the fleet-wide rate limit. Required.
	Limiter Limiter
	// Ledger grants each key's idempotency lease. Required.
	Ledger Ledger
	// Devices resolves the azureADDeviceId or serialNumber a job names to
	// its managed device, with one read through Reads. Without both, such
	// jobs are rejected.
	Devices Devices
	// Reads is the fleet's read budget (ratelimit.DefaultReadRate, apart
	// from Limiter's POSTs).
	Reads Reads
	// FollowSources are the sources whose succeeded jobs are all followed
	// (RECOVER_FOLLOW_SOURCES), as if each had "follow": true.
	FollowSources map[string]bool
	// Policy is what jobs may ask for.
	Policy wire.Policy
	// Quota holds the jobs of a source over its budget (see package
	// quota). Defaults to none: every source unlimited.
	Quota Quota
	// HoldRecheck is the longest a held job waits before it is checked
	// again. Defaults to DefaultHoldRecheck (10s).
	HoldRecheck time.Duration
	// Observer learns of Graph calls, rate-limit waits and pauses. Defaults
	// to none.
	Observer Observer
	// Worker names this worker in results. Required.
	Worker string
	// Backoff configures retries of 5xx, timeouts and 429s without
	// Retry-After.
	Backoff Backoff
	// MaxInlineWait is the longest wait (rate-limit pause, backoff, another
	// worker's lease) spent holding a job; longer waits hand it back with a
	// delay so the slot serves other tenants. Defaults to
	// DefaultMaxInlineWait (10s).
	MaxInlineWait time.Duration
	// KeepAliveEvery is how often a held job's ack deadline and lease are
	// extended. Defaults to DefaultKeepAliveEvery (5s).
	KeepAliveEvery time.Duration
	// MaxDeliveries bounds how often one job message is delivered before it
	// ends failed. Defaults to DefaultMaxDeliveries (50).
	MaxDeliveries uint64
	// Logger receives the handler's log lines. Defaults to none.
	Logger zerolog.Logger
	// Now returns the current time. Defaults to time.Now.
	Now func() time.Time
}

// Backoff bounds retries of one job.
type Backoff struct {
	// Initial is the first delay. Defaults to DefaultBackoffInitial
	// (500ms).
	Initial time.Duration
	// Max caps one delay, including a server's Retry-After. Defaults to
	// DefaultBackoffMax (60s).
	Max time.Duration
	// MaxAttempts bounds the failed Graph calls (5xx, timeouts, connection
	// errors) of one delivery; 429s do not count. Defaults to
	// DefaultMaxAttempts (8).
	MaxAttempts int
	// MaxElapsed bounds the time from a delivery's start to its last retry
	// (time spent queued, or handed back while a tenant is throttled, does
	// not count: waiting for the limit is not failing). Defaults to
	// DefaultMaxElapsed (15m).
	MaxElapsed time.Duration
}

// DefaultConfig returns the configuration with every default filled in and
// no dependencies: what New makes of a Config's zero fields.
func DefaultConfig() Config {
	return Config{
		Backoff: Backoff{
			Initial: DefaultBackoffInitial, Max: DefaultBackoffMax,
			MaxAttempts: DefaultMaxAttempts, MaxElapsed: DefaultMaxElapsed,
		},
		MaxInlineWait:  DefaultMaxInlineWait,
		KeepAliveEvery: DefaultKeepAliveEvery,
		MaxDeliveries:  DefaultMaxDeliveries,
		HoldRecheck:    DefaultHoldRecheck,
		Logger:         zerolog.Nop(),
		Now:            time.Now,
		Observer:       nopObserver{},
	}
}

// withDefaults returns cfg with its zero fields set from DefaultConfig.
func (cfg Config) withDefaults() Config {
	d := DefaultConfig()
	setDefault(&cfg.MaxInlineWait, d.MaxInlineWait)
	setDefault(&cfg.KeepAliveEvery, d.KeepAliveEvery)
	setDefault(&cfg.MaxDeliveries, d.MaxDeliveries)
	setDefault(&cfg.HoldRecheck, d.HoldRecheck)
	setDefault(&cfg.Backoff.Initial, d.Backoff.Initial)
	setDefault(&cfg.Backoff.Max, d.Backoff.Max)
	setDefault(&cfg.Backoff.MaxAttempts, d.Backoff.MaxAttempts)
	setDefault(&cfg.Backoff.MaxElapsed, d.Backoff.MaxElapsed)
	if cfg.Now == nil {
		cfg.Now = d.Now
	}
	if cfg.Observer == nil {
		cfg.Observer = d.Observer
	}
	return cfg
}

func setDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

// validate reports what a person must fix in a Config with defaults applied.
func (cfg *Config) validate() error {
	var errs []error
	for _, dep := range []struct {
		name    string
		missing bool
	}{
		{"Graph", cfg.Graph == nil}, {"Tokens", cfg.Tokens == nil},
		{"Limiter", cfg.Limiter == nil}, {"Ledger", cfg.Ledger == nil},
		{"Worker", cfg.Worker == ""},
	} {
		if dep.missing {
			errs = append(errs, fmt.Errorf("%s is required", dep.name))
		}
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"MaxInlineWait", cfg.MaxInlineWait}, {"KeepAliveEvery", cfg.KeepAliveEvery}, {"HoldRecheck", cfg.HoldRecheck},
		{"Backoff.Initial", cfg.Backoff.Initial}, {"Backoff.Max", cfg.Backoff.Max},
		{"Backoff.MaxElapsed", cfg.Backoff.MaxElapsed},
	} {
		if d.v < 0 {
			errs = append(errs, fmt.Errorf("%s is %s; it must be positive, or zero for the default", d.name, d.v))
		}
	}
	if cfg.Backoff.MaxAttempts < 0 {
		errs = append(errs, fmt.Errorf("Backoff.MaxAttempts is %d; it must be positive, or zero for the default", cfg.Backoff.MaxAttempts))
	}
	if cfg.Backoff.Initial > cfg.Backoff.Max {
		errs = append(errs, fmt.Errorf("Backoff.Initial (%s) exceeds Backoff.Max (%s)", cfg.Backoff.Initial, cfg.Backoff.Max))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("job: config: %w", err)
	}
	return nil
}

// New returns a Handler ready for Handle: cfg with its defaults applied and
// its required fields checked.
func New(cfg Config) (*Handler, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return &Handler{cfg: cfg}, nil
}
