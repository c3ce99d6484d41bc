package gateway

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/recoverpasscode/recoverpasscode/wire"
)

// Defaults of Config.
const (
	// DefaultAddr is where cmd/gateway listens (GATEWAY_HTTP_ADDR).
	DefaultAddr = "127.0.0.1:8080"
	// DefaultRole is the app role an Entra ID access token must carry
	// (GATEWAY_ROLE).
	DefaultRole = "Jobs.Submit"
	// DefaultAuthorityHost is Entra ID's public cloud (AZURE_AUTHORITY_HOST).
	DefaultAuthorityHost = "https://login.microsoftonline.com"
	// MaxWait is the longest Prefer: wait=N honoured, in seconds' worth;
	// larger values are clamped to it.
	MaxWait = 60 * time.Second
)

// Config describes a gateway. NATS, TenantID and at least one source are
// required; every other zero value has a documented default.
type Config struct {
	// NATS is the connection jobs are published and results read through.
	// The gateway never closes it. Connect it with nats.ReconnectBufSize(-1)
	// (cmd/gateway does): otherwise a job published while the connection is
	// down waits in the client's buffer and may still be sent after the
	// caller was told 503, nothing accepted.
	NATS *nats.Conn
	// Prefix is the first subject token and base of stream and bucket names
	// [RECOVER_PREFIX]. Defaults to "recoverpasscode".
	Prefix string
	// TenantID is the default tenant of a job that names none, as the
	// worker's, and the tenant whose Entra ID access tokens are accepted
	// [AZURE_TENANT_ID]. Required: a GUID.
	TenantID string
	// Tenants lists the tenants jobs may target [RECOVER_TENANTS]; others
	// are refused with 400 as the worker would reject them. Defaults to
	// TenantID alone.
	Tenants []string
	// Sources name who may call, and how each proves it (GATEWAY_CONFIG,
	// GATEWAY_SOURCES). At least one is required.
	Sources []Source
	// Audiences are the accepted aud values of Entra ID access tokens
	// [GATEWAY_AUDIENCE]: the API's application (client) ID, which v2.0
	// tokens carry, and its application ID URI if v1.0 tokens are used.
	// Required when a source names an Entra application.
	Audiences []string
	// Role is the app role an access token's roles claim must hold
	// [GATEWAY_ROLE]. Defaults to "Jobs.Submit".
	Role string
	// AuthorityHost is Entra ID's host [AZURE_AUTHORITY_HOST]: tokens must
	// be issued by <AuthorityHost>/<TenantID>/v2.0. Defaults to
	// https://login.microsoftonline.com.
	AuthorityHost string
	// HTTPClient fetches Entra ID's discovery document and signing keys.
	// Defaults to a client with a 10s timeout that trusts the system's CAs
	// (SSL_CERT_FILE adds a private one).
	HTTPClient *http.Client
	// Registry receives the gateway's metrics, which /metrics serves with
	// whatever else it holds. Defaults to a new registry with the Go and
	// process collectors.
	Registry *prometheus.Registry
	// Log receives one access log line per request and the lifecycle
	// events. Defaults to no logging.
	Log *zerolog.Logger
	// RetryAfter is the Retry-After of a 202 and of a queued job: how soon
	// to look again. Defaults to 2s.
	RetryAfter time.Duration
	// Timeout bounds each NATS operation of a request (a publish, a read).
	// Defaults to 5s.
	Timeout time.Duration
	// Console, when set, serves every path the API does not (the web
	// console, package console): "/" and below but /v1/, /healthz, /readyz
	// and /metrics. Without it those paths answer 404.
	Console http.Handler
	// Ready, when set, is asked by /readyz besides NATS: an error (say,
	// write-back has not started yet) makes it answer 503 saying so.
	Ready func() error
	// Pprof also serves Go's profiler under /debug/pprof/, without
	// authentication [RECOVER_PPROF]: for measurements only, on an address
	// nobody else reaches. Defaults to false.
	Pprof bool
}

func (c *Config) defaults() {
	if c.Prefix == "" {
		c.Prefix = wire.DefaultPrefix
	}
	if c.Role == "" {
		c.Role = DefaultRole
	}
	if c.AuthorityHost == "" {
		c.AuthorityHost = DefaultAuthorityHost
	}
	c.AuthorityHost = strings.TrimRight(c.AuthorityHost, "/")
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	if c.Log == nil {
		nop := zerolog.Nop()
		c.Log = &nop
	}
	if c.RetryAfter <= 0 {
		c.RetryAfter = 2 * time.Second
	}
	if c.Timeout <= 0 {
		c.Timeout = 5 * time.Second
	}
}

// ErrNoNATS is reported by Validate when Config.NATS is nil; a caller that
// checks the settings before connecting may skip it.
var ErrNoNATS = errors.New("gateway: a NATS connection is required")

// Validate reports every setting that cannot work, in terms of the
// variables cmd/gateway reads.
func (c Config) Validate() error {
	c.defaults()
	var errs []error
	if c.NATS == nil {
		errs = append(errs, ErrNoNATS)
	}
	if !wire.ValidToken(c.Prefix) {
		errs = append(errs, fmt.Errorf("RECOVER_PREFIX %q: use one subject token: letters, digits, '-' or '_'", c.Prefix))
	}
	if !wire.IsGUID(c.TenantID) {
		errs = append(errs, fmt.Errorf("AZURE_TENANT_ID %q: want the tenant's GUID (the default tenant of jobs, and whose access tokens are accepted)", wire.Truncate(c.TenantID, 64)))
	}
	for _, t := range c.Tenants {
		if !wire.IsGUID(t) {
			errs = append(errs, fmt.Errorf("RECOVER_TENANTS: %q is not a tenant GUID", wire.Truncate(t, 64)))
		}
	}
	if err := checkSources(c.Sources); err != nil {
		errs = append(errs, err)
	}
	if usesEntra(c.Sources) {
		if len(c.Audiences) == 0 {
			errs = append(errs, errors.New("GATEWAY_AUDIENCE is required when a source names an Entra application: the API's application (client) ID, or its application ID URI"))
		}
		if !strings.HasPrefix(c.AuthorityHost, "https://") {
			errs = append(errs, fmt.Errorf("AZURE_AUTHORITY_HOST %q: want an https:// URL", c.AuthorityHost))
		}
	}
	for _, a := range c.Audiences {
		if a == "" || strings.ContainsAny(a, " \t\r\n,") {
			errs = append(errs, fmt.Errorf("GATEWAY_AUDIENCE: %q is not an audience", wire.Truncate(a, 64)))
		}
	}
	if strings.ContainsAny(c.Role, " \t\r\n,") {
		errs = append(errs, fmt.Errorf("GATEWAY_ROLE %q: an app role value has no spaces or commas", wire.Truncate(c.Role, 64)))
	}
	return errors.Join(errs...)
}

// policy is the worker's own validation of a job, with these settings.
func (c Config) policy() wire.Policy {
	return wire.Policy{DefaultTenant: c.TenantID, Tenants: c.Tenants, Names: wire.Names{Prefix: c.Prefix}}
}
