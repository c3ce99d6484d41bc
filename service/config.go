// Package service assembles a worker process: it connects to NATS, sets up
// the streams and buckets, builds the Graph client, the idempotency ledger
// and the shared limiter, serves health, and runs the consume loop until
// told to stop. cmd/worker reads flags into a Config and calls Run; tests,
// benchmarks and --dev run the very same code in process.
package service

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/recoverpasscode/recoverpasscode/graph"
	"github.com/recoverpasscode/recoverpasscode/idempotency"
	"github.com/recoverpasscode/recoverpasscode/job"
	"github.com/recoverpasscode/recoverpasscode/queue"
	"github.com/recoverpasscode/recoverpasscode/quota"
	"github.com/recoverpasscode/recoverpasscode/ratelimit"
	"github.com/recoverpasscode/recoverpasscode/wire"
	"github.com/recoverpasscode/recoverpasscode/worker"
)

// Config is everything a worker process needs. The environment variable
// each field comes from in cmd/worker is in brackets. DefaultConfig holds
// every default; Validate (and so Run) fills a zero field from it, except
// where the field says otherwise.
type Config struct {
	// NATS holds the connection settings [NATS_*]. NATS.URL defaults to
	// queue.DefaultURL (nats://127.0.0.1:4222).
	NATS queue.Conn
	// Prefix of every subject, stream and bucket [RECOVER_PREFIX].
	// Defaults to wire.DefaultPrefix ("recoverpasscode").
	Prefix string
	// Replicas of streams and buckets [RECOVER_REPLICAS]. Defaults to 1.
	Replicas int
	// Credential configures the token source [AZURE_*, RECOVER_TOKEN_CACHE]:
	// app-only, or, with only Credential.TokenCache set, delegated from the
	// cache `worker login` wrote. Credential.AuthorityHost defaults to
	// graph.DefaultAuthorityHost (https://login.microsoftonline.com), and
	// Credential.GraphBaseURL to GraphURL.
	Credential graph.CredentialConfig
	// GraphURL is the Graph root including its version [GRAPH_BASE_URL].
	// Defaults to graph.DefaultBaseURL (https://graph.microsoft.com/v1.0).
	GraphURL string
	// HTTPClient carries Graph and Entra ID requests. Defaults to clients
	// trusting the system pool, which honours SSL_CERT_FILE.
	HTTPClient *http.Client

	// Tenants jobs may target [RECOVER_TENANTS]. Empty allows only
	// Credential.TenantID.
	Tenants []string
	// InboxPerSource answers a job's inbox replyTo only under its own
	// source's "_INBOX.<source>." and rejects the job otherwise
	// [RECOVER_INBOX_PER_SOURCE]; see wire.Policy.InboxPerSource. Off by
	// default.
	InboxPerSource bool
	// Rate is the fleet-wide limit per app per tenant [RECOVER_RATE_LIMIT].
	// Defaults to ratelimit.DefaultRate (200/20s).
	Rate ratelimit.Rate
	// RateBurst is the share of Rate's N, in percent, that may start at
	// once for a tenant [RECOVER_RATE_BURST]; the rest of a backlog's first
	// window is paced at the learned rate, so that a tenant whose
	// real budget is lower than the learned one answers a call or two with
	// 429, not a burst. 100 lets an idle fleet use the whole window at
	// once. Defaults to DefaultRateBurst (25).
	RateBurst int
	// SourceLimits is each source's budget [RECOVER_SOURCE_LIMITS], such as
	// "automation=100/1h,ticketing=unlimited" (quota.ParseLimits): a job
	// over its source's budget is held, not failed, until the budget allows
	// it or an operator releases it (enqueue held). Defaults to none: every
	// source unlimited.
	SourceLimits quota.Limits
	// Follow configures the reads: the read budget, and following what the
	// devices do [RECOVER_READ_RATE_LIMIT, RECOVER_FOLLOW_*]; see
	// FollowConfig.
	Follow FollowConfig
	// Concurrency is the number of jobs in flight [RECOVER_CONCURRENCY].
	// Defaults to 32.
	Concurrency int
	// HTTPAddr serves /healthz, /readyz and /metrics [RECOVER_HTTP_ADDR].
	// DefaultConfig sets DefaultHTTPAddr (127.0.0.1:9464); empty, the zero
	// value, turns it off.
	HTTPAddr string
	// KeysTTL is how long an idempotency record lives after its last change
	// [RECOVER_KEYS_TTL]. Defaults to idempotency.DefaultTTL (24h).
	KeysTTL time.Duration
	// Lease is how long a worker holds a key without renewing it
	// [RECOVER_LEASE]. Defaults to idempotency.DefaultLease (30s).
	Lease time.Duration
	// AttemptTimeout bounds one Graph call [RECOVER_ATTEMPT_TIMEOUT].
	// Defaults to graph.DefaultAttemptTimeout (30s).
	AttemptTimeout time.Duration
	// MaxAttempts bounds failed Graph calls per job [RECOVER_MAX_ATTEMPTS].
	// Defaults to 8.
	MaxAttempts int
	// DrainTimeout bounds a soft stop [RECOVER_DRAIN_TIMEOUT]. Defaults to
	// 30s.
	DrainTimeout time.Duration
	// AckWait is how long JetStream waits for an ack or a progress signal
	// before redelivering [RECOVER_ACK_WAIT]. Defaults to
	// queue.DefaultAckWait (30s).
	AckWait time.Duration
	// Name names this worker in results, logs and leases
	// [RECOVER_WORKER_NAME]. Required: the zero value is refused;
	// DefaultConfig sets DefaultName(), "host-pid".
	Name string
	// LogFormat is "json" (the default) or "console" [RECOVER_LOG_FORMAT].
	LogFormat string
	// LogLevel is debug, info, warn or error [RECOVER_LOG_LEVEL]. Defaults
	// to info.
	LogLevel string
	// Clock is the local clock that the rate limiter and the idempotency
	// leases read before correcting it to the NATS server's (see package
	// clock). Nil, the default, is time.Now; tests give a worker a wrong
	// one to prove the correction.
	Clock func() time.Time
	// Pprof also serves Go's profiler under /debug/pprof/ on HTTPAddr
	// [RECOVER_PPROF]. Off by default: profiles expose the process's
	// memory, so turn it on only where HTTPAddr is not reachable by others.
	Pprof bool
}

// DefaultRateBurst is the percent of RECOVER_RATE_LIMIT's N that may start
// at once for a tenant.
const DefaultRateBurst = 25

// DefaultHTTPAddr is where a worker serves /healthz, /readyz and /metrics
// unless told otherwise: loopback, so nothing is exposed by default.
const DefaultHTTPAddr = "127.0.0.1:9464"

// DefaultConfig returns the settings a worker runs with when none are
// given: what cmd/worker's flags and --help show as defaults, and what
// Validate fills a zero field with. It sets everything but the credentials, which
// have no default (AZURE_TENANT_ID and AZURE_CLIENT_ID are required).
func DefaultConfig() Config {
	return Config{
		NATS:           queue.Conn{URL: queue.DefaultURL},
		Prefix:         wire.DefaultPrefix,
		Replicas:       1,
		Credential:     graph.CredentialConfig{AuthorityHost: graph.DefaultAuthorityHost},
		GraphURL:       graph.DefaultBaseURL,
		Rate:           ratelimit.DefaultRate,
		RateBurst:      DefaultRateBurst,
		Concurrency:    worker.DefaultConcurrency,
		Follow:         DefaultFollowConfig(),
		HTTPAddr:       DefaultHTTPAddr,
		KeysTTL:        idempotency.DefaultTTL,
		Lease:          idempotency.DefaultLease,
		AttemptTimeout: graph.DefaultAttemptTimeout,
		MaxAttempts:    job.DefaultMaxAttempts,
		DrainTimeout:   worker.DefaultDrainTimeout,
		AckWait:        queue.DefaultAckWait,
		Name:           DefaultName(),
		LogFormat:      "json",
		LogLevel:       "info",
	}
}

// DefaultName names a worker after its host and process: "host-pid".
func DefaultName() string {
	host, err := os.Hostname()
	if err != nil {
		host = "worker"
	}
	return fmt.Sprintf("%s-%d", host, os.Getpid())
}

// defaults fills every zero field that has a default from DefaultConfig.
// HTTPAddr stays empty (off), Name stays required, and the NATS and
// credential settings are left to queue and graph, which default their
// own zero values.
func (c *Config) defaults() {
	d := DefaultConfig()
	orDefault(&c.Prefix, d.Prefix)
	orDefault(&c.Replicas, d.Replicas)
	orDefault(&c.GraphURL, d.GraphURL)
	orDefault(&c.Credential.GraphBaseURL, c.GraphURL)
	orDefault(&c.Rate, d.Rate)
	orDefault(&c.RateBurst, d.RateBurst)
	orDefault(&c.Concurrency, d.Concurrency)
	orDefault(&c.KeysTTL, d.KeysTTL)
	orDefault(&c.Lease, d.Lease)
	orDefault(&c.AttemptTimeout, d.AttemptTimeout)
	orDefault(&c.MaxAttempts, d.MaxAttempts)
	orDefault(&c.DrainTimeout, d.DrainTimeout)
	orDefault(&c.AckWait, d.AckWait)
	orDefault(&c.LogFormat, d.LogFormat)
	orDefault(&c.LogLevel, d.LogLevel)
	c.Follow.defaults()
}

// burst is the calls of Rate's N that RateBurst lets start at once: at
// least one.
func (c *Config) burst() int {
	return max(1, (c.Rate.N*c.RateBurst+50)/100)
}

// orDefault sets *p to def if *p is its type's zero value.
func orDefault[T comparable](p *T, def T) {
	var zero T
	if *p == zero {
		*p = def
	}
}

// Validate applies defaults and reports settings that cannot work, naming
// the variable to fix.
func (c *Config) Validate() error {
	c.defaults()
	var errs []error
	if !wire.ValidToken(c.Prefix) {
		errs = append(errs, fmt.Errorf("RECOVER_PREFIX %q: want one subject token (letters, digits, '-', '_')", c.Prefix))
	}
	if c.RateBurst < 1 || c.RateBurst > 100 {
		errs = append(errs, fmt.Errorf("RECOVER_RATE_BURST %d: want a percentage from 1 to 100", c.RateBurst))
	}
	if c.Concurrency < 1 {
		errs = append(errs, errors.New("RECOVER_CONCURRENCY: want at least 1"))
	}
	if c.Replicas < 1 || c.Replicas > 5 {
		errs = append(errs, errors.New("RECOVER_REPLICAS: want 1 to 5"))
	}
	if c.LogFormat != "json" && c.LogFormat != "console" {
		errs = append(errs, fmt.Errorf("RECOVER_LOG_FORMAT %q: want json or console", c.LogFormat))
	}
	if c.Name == "" {
		errs = append(errs, errors.New("RECOVER_WORKER_NAME: a worker needs a name"))
	}
	if c.Lease < time.Second || c.AckWait < time.Second {
		errs = append(errs, errors.New("RECOVER_LEASE and RECOVER_ACK_WAIT: want at least 1s each"))
	}
	if err := c.NATS.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.Credential.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.Follow.validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.delegatedTenants(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// delegatedTenants refuses tenants a delegated account cannot serve: it
// belongs to AZURE_TENANT_ID alone, so a job for any other tenant is
// rejected by policy rather than stalling the worker on a token it cannot
// have.
func (c *Config) delegatedTenants() error {
	if !c.Credential.Delegated() {
		return nil
	}
	for _, t := range c.Tenants {
		if !strings.EqualFold(t, c.Credential.TenantID) {
			return fmt.Errorf("RECOVER_TENANTS: %q: delegated sign-in (RECOVER_TOKEN_CACHE) serves only AZURE_TENANT_ID %s; other tenants need app-only credentials", t, c.Credential.TenantID)
		}
	}
	return nil
}
