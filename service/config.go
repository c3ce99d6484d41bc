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
	"strings"
	"time"

	"github.com/recoverpasscode/recoverpasscode/graph"
	"github.com/recoverpasscode/recoverpasscode/queue"
	"github.com/recoverpasscode/recoverpasscode/ratelimit"
	"github.com/recoverpasscode/recoverpasscode/wire"
)

// Config is everything a worker process needs. The environment variable
// each field comes from in cmd/worker is in brackets.
type Config struct {
	// NATS holds the connection settings [NATS_*].
	NATS queue.Conn
	// Prefix of every subject, stream and bucket [RECOVER_PREFIX].
	// Defaults to "recoverpasscode".
	Prefix string
	// Replicas of streams and buckets [RECOVER_REPLICAS]. Defaults to 1.
	Replicas int
	// Credential configures the token source [AZURE_*, RECOVER_TOKEN_CACHE]:
	// app-only, or, with only Credential.TokenCache set, delegated from the
	// cache `worker login` wrote.
	Credential graph.CredentialConfig
	// GraphURL is the Graph root including its version [GRAPH_BASE_URL].
	// Defaults to https://graph.microsoft.com/v1.0.
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
	// Defaults to 200/20s.
	Rate ratelimit.Rate
	// Concurrency is the number of jobs in flight [RECOVER_CONCURRENCY].
	// Defaults to 32.
	Concurrency int
	// HTTPAddr serves /healthz, /readyz and /metrics [RECOVER_HTTP_ADDR].
	// Empty turns it off.
	HTTPAddr string
	// KeysTTL is how long an idempotency record lives after its last change
	// [RECOVER_KEYS_TTL]. Defaults to 24h.
	KeysTTL time.Duration
	// Lease is how long a worker holds a key without renewing it
	// [RECOVER_LEASE]. Defaults to 30s.
	Lease time.Duration
	// AttemptTimeout bounds one Graph call [RECOVER_ATTEMPT_TIMEOUT].
	// Defaults to 30s.
	AttemptTimeout time.Duration
	// MaxAttempts bounds failed Graph calls per job [RECOVER_MAX_ATTEMPTS].
	// Defaults to 8.
	MaxAttempts int
	// DrainTimeout bounds a soft stop [RECOVER_DRAIN_TIMEOUT]. Defaults to
	// 30s.
	DrainTimeout time.Duration
	// AckWait is how long JetStream waits for an ack or a progress signal
	// before redelivering [RECOVER_ACK_WAIT]. Defaults to 30s.
	AckWait time.Duration
	// Name names this worker in results, logs and leases
	// [RECOVER_WORKER_NAME]. Required.
	Name string
	// LogFormat is "json" (the default) or "console" [RECOVER_LOG_FORMAT].
	LogFormat string
	// LogLevel is debug, info, warn or error [RECOVER_LOG_LEVEL]. Defaults
	// to info.
	LogLevel string
	// Pprof also serves Go's profiler under /debug/pprof/ on HTTPAddr
	// [RECOVER_PPROF]. Off by default: profiles expose the process's
	// memory, so turn it on only where HTTPAddr is not reachable by others.
	Pprof bool
}

func (c *Config) defaults() {
	if c.Prefix == "" {
		c.Prefix = wire.DefaultPrefix
	}
	if c.Replicas == 0 {
		c.Replicas = 1
	}
	if c.GraphURL == "" {
		c.GraphURL = graph.DefaultBaseURL
	}
	if c.Credential.GraphBaseURL == "" {
		c.Credential.GraphBaseURL = c.GraphURL
	}
	if c.Rate == (ratelimit.Rate{}) {
		c.Rate = ratelimit.DefaultRate
	}
	if c.Concurrency == 0 {
		c.Concurrency = 32
	}
	if c.KeysTTL == 0 {
		c.KeysTTL = 24 * time.Hour
	}
	if c.Lease == 0 {
		c.Lease = 30 * time.Second
	}
	if c.AttemptTimeout == 0 {
		c.AttemptTimeout = 30 * time.Second
	}
	if c.MaxAttempts == 0 {
		c.MaxAttempts = 8
	}
	if c.DrainTimeout == 0 {
		c.DrainTimeout = 30 * time.Second
	}
	if c.AckWait == 0 {
		c.AckWait = 30 * time.Second
	}
	if c.LogFormat == "" {
		c.LogFormat = "json"
	}
	if c.LogLevel == "" {
		c.LogLevel = "info"
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
