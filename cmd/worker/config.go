package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/recoverpasscode/recoverpasscode/follow"
	"github.com/recoverpasscode/recoverpasscode/gateway"
	"github.com/recoverpasscode/recoverpasscode/internal/envflag"
	"github.com/recoverpasscode/recoverpasscode/quota"
	"github.com/recoverpasscode/recoverpasscode/ratelimit"
	"github.com/recoverpasscode/recoverpasscode/service"
)

// config is what the worker reads from flags and the environment: the
// service's configuration and how to start.
type config struct {
	Dev    bool
	DevDir string
	// GatewayAddr is where --dev serves the HTTP gateway; empty serves
	// none. GatewaySources are the sources of GATEWAY_CONFIG, read with
	// --dev only.
	GatewayAddr    string
	GatewaySources []gateway.Source
	// ConsoleReadOnly serves the --dev console without actions.
	ConsoleReadOnly bool
	gatewayConfig   string
	service.Config
	// logFormatSet says whether --log-format or RECOVER_LOG_FORMAT chose
	// the log format, which then holds with --dev too.
	logFormatSet bool
}

const usageHeader = `worker consumes recoverPasscode jobs from NATS JetStream and calls Microsoft Graph.

Usage:
  worker [flags]          run a worker against NATS and Graph
  worker --dev [flags]    run an embedded nats-server, a Graph double and the HTTP gateway too, for trying it out
  worker login [flags]    sign a service account in for delegated tokens (see worker login --help)

Every flag can also be set by the environment variable in brackets; a flag wins.

Flags:
`

// parseConfig reads args and the environment.
func parseConfig(args []string) (*config, error) {
	fs := flag.NewFlagSet("worker", flag.ContinueOnError)
	s := envflag.New(fs)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usageHeader)
		fs.PrintDefaults()
	}
	d := service.DefaultConfig()
	var c config
	var tenants, rate, sourceLimits, readRate, followSources string
	fs.BoolVar(&c.Dev, "dev", false, "start an embedded nats-server (on NATS_URL's host and port) and a Graph and Entra ID double, use them, and serve the HTTP gateway in front of them")
	s.StringVar(&c.DevDir, "dev-dir", "RECOVER_DEV_DIR", service.DefaultDevDir(), "with --dev: where the embedded nats-server keeps its data")
	s.BoolVar(&c.ConsoleReadOnly, "console-readonly", "GATEWAY_CONSOLE_READONLY", false, "with --dev: serve the console without any action (no replay, release, pause or resume)")
	s.StringVar(&c.GatewayAddr, "gateway-http-addr", "GATEWAY_HTTP_ADDR", gateway.DefaultAddr, "with --dev: address the HTTP gateway is served on, with a development API key for source ticketing (empty: no gateway)")
	s.StringVar(&c.gatewayConfig, "gateway-config", "GATEWAY_CONFIG", "", "with --dev: YAML file of the gateway's sources, as cmd/gateway reads it; the development key is added to source ticketing")
	c.NATS.Flags(s)
	s.StringVar(&c.Prefix, "prefix", "RECOVER_PREFIX", d.Prefix, "first token of every subject, and base of stream and bucket names")
	s.IntVar(&c.Replicas, "replicas", "RECOVER_REPLICAS", d.Replicas, "replicas of streams and buckets (3 on a NATS cluster)")
	s.StringVar(&c.Credential.TenantID, "tenant-id", "AZURE_TENANT_ID", "", "default Entra ID tenant (required but with --dev)")
	s.StringVar(&c.Credential.ClientID, "client-id", "AZURE_CLIENT_ID", "", "app registration (client) id (required but with --dev)")
	s.SecretVar(&c.Credential.ClientSecret, "client-secret", "AZURE_CLIENT_SECRET", "app-only with a client secret; prefer the variable")
	s.StringVar(&c.Credential.CertificatePath, "client-certificate-path", "AZURE_CLIENT_CERTIFICATE_PATH", "", "app-only with a certificate: PEM (certificate and key) or PKCS#12 file")
	s.SecretVar(&c.Credential.CertificatePassword, "client-certificate-password", "AZURE_CLIENT_CERTIFICATE_PASSWORD", "password of the certificate file, if any")
	s.StringVar(&c.Credential.FederatedTokenFile, "federated-token-file", "AZURE_FEDERATED_TOKEN_FILE", "", "app-only with workload identity: file holding the federated token (re-read on each use)")
	s.StringVar(&c.Credential.TokenCache, "token-cache", "RECOVER_TOKEN_CACHE", "", "delegated tokens, when no app-only credential is set: file of the token cache that worker login wrote (re-read when it changes)")
	s.StringVar(&c.Credential.AuthorityHost, "authority-host", "AZURE_AUTHORITY_HOST", d.Credential.AuthorityHost, "Entra ID host; a non-default host turns MSAL instance discovery off")
	s.StringVar(&c.GraphURL, "graph-base-url", "GRAPH_BASE_URL", d.GraphURL, "Graph root including the version")
	s.StringVar(&tenants, "tenants", "RECOVER_TENANTS", "", "comma-separated tenants jobs may target (defaults to AZURE_TENANT_ID)")
	s.BoolVar(&c.InboxPerSource, "inbox-per-source", "RECOVER_INBOX_PER_SOURCE", d.InboxPerSource, "reject a job whose replyTo is an _INBOX. subject other than its source's own _INBOX.<source>. (where each NATS user reads only its own inboxes)")
	s.StringVar(&rate, "rate-limit", "RECOVER_RATE_LIMIT", d.Rate.String(), "Graph calls allowed per app per tenant across all workers, N/duration, or unlimited")
	s.StringVar(&sourceLimits, "source-limits", "RECOVER_SOURCE_LIMITS", d.SourceLimits.String(), "each source's budget of jobs that reach Graph, source=N/duration,... (e.g. automation=100/1h,ticketing=unlimited); a job over it is held until the budget allows or enqueue held release (default: every source unlimited)")
	s.IntVar(&c.RateBurst, "rate-burst", "RECOVER_RATE_BURST", d.RateBurst, "percent of the rate limit's N that may start at once for a tenant; the rest of a backlog's first window is paced at the learned rate (100: the whole window at once)")
	s.StringVar(&readRate, "read-rate-limit", "RECOVER_READ_RATE_LIMIT", ratelimit.DefaultReadRate.String(), "Graph reads (resolving devices, following them) allowed per app per tenant across all workers, apart from the calls of --rate-limit")
	s.StringVar(&followSources, "follow-sources", "RECOVER_FOLLOW_SOURCES", "", "comma-separated sources whose succeeded jobs are all followed, as if each said \"follow\": true")
	s.DurationVar(&c.Follow.Schedule.First, "follow-first", "RECOVER_FOLLOW_FIRST", follow.DefaultFirst, "wait from the Graph call to a followed device's first poll")
	s.DurationVar(&c.Follow.Schedule.Max, "follow-max", "RECOVER_FOLLOW_MAX", follow.DefaultMax, "longest interval between polls of a followed device (intervals double up to it)")
	s.DurationVar(&c.Follow.Schedule.For, "follow-for", "RECOVER_FOLLOW_FOR", follow.DefaultFor, "how long after the call a device is followed before its confirmation says unknown")
	s.IntVar(&c.Follow.Concurrency, "follow-concurrency", "RECOVER_FOLLOW_CONCURRENCY", 16, "polls of followed devices in flight in this process")
	s.IntVar(&c.Concurrency, "concurrency", "RECOVER_CONCURRENCY", d.Concurrency, "jobs in flight in this process")
	s.StringVar(&c.HTTPAddr, "http-addr", "RECOVER_HTTP_ADDR", d.HTTPAddr, "address of /healthz, /readyz and /metrics (empty: off)")
	s.DurationVar(&c.KeysTTL, "keys-ttl", "RECOVER_KEYS_TTL", d.KeysTTL, "how long an idempotency record is kept after its last change")
	s.DurationVar(&c.Lease, "lease", "RECOVER_LEASE", d.Lease, "how long a worker holds a key without renewing it before another may take over")
	s.DurationVar(&c.AttemptTimeout, "attempt-timeout", "RECOVER_ATTEMPT_TIMEOUT", d.AttemptTimeout, "deadline of one Graph call")
	s.IntVar(&c.MaxAttempts, "max-attempts", "RECOVER_MAX_ATTEMPTS", d.MaxAttempts, "failed Graph calls (5xx, timeouts, connection errors; 429s do not count) before a job ends failed")
	s.DurationVar(&c.DrainTimeout, "drain-timeout", "RECOVER_DRAIN_TIMEOUT", d.DrainTimeout, "on SIGTERM, how long jobs in flight may finish before they are handed back")
	s.DurationVar(&c.AckWait, "ack-wait", "RECOVER_ACK_WAIT", d.AckWait, "how long a job may go without an ack or progress signal before JetStream redelivers it (a dead worker's jobs wait this long)")
	s.StringVar(&c.Name, "name", "RECOVER_WORKER_NAME", d.Name, "this worker's name in results, logs and leases")
	s.StringVar(&c.LogFormat, "log-format", "RECOVER_LOG_FORMAT", d.LogFormat, "json, or console for people; with --dev, console when stderr is a terminal unless this is set")
	s.StringVar(&c.LogLevel, "log-level", "RECOVER_LOG_LEVEL", d.LogLevel, "debug, info, warn or error")
	s.BoolVar(&c.Pprof, "pprof", "RECOVER_PPROF", d.Pprof, "also serve Go's profiler under /debug/pprof/ on the HTTP address (keep that address private)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q (see --help)", fs.Arg(0))
	}
	_, c.logFormatSet = os.LookupEnv("RECOVER_LOG_FORMAT")
	fs.Visit(func(f *flag.Flag) { c.logFormatSet = c.logFormatSet || f.Name == "log-format" })
	var errs []error
	if err := s.Err(); err != nil {
		errs = append(errs, err)
	}
	r, err := ratelimit.ParseRate(rate)
	if err != nil {
		errs = append(errs, fmt.Errorf("RECOVER_RATE_LIMIT: %w", err))
	}
	c.Rate = r
	if c.Follow.ReadRate, err = ratelimit.ParseRate(readRate); err != nil {
		errs = append(errs, fmt.Errorf("RECOVER_READ_RATE_LIMIT: %w", err))
	}
	c.Follow.Sources = splitList(followSources)
	if c.SourceLimits, err = quota.ParseLimits(sourceLimits); err != nil {
		errs = append(errs, fmt.Errorf("RECOVER_SOURCE_LIMITS: %w", err))
	}
	c.Tenants = splitList(tenants)
	c.Credential.GraphBaseURL = c.GraphURL
	if !c.Dev { // --dev fills the credentials in later
		if err := c.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	if c.Dev && c.gatewayConfig != "" {
		if c.GatewaySources, err = readGatewayConfig(c.gatewayConfig); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return &c, nil
}

// forPeople makes --dev, which is for people trying the worker out, log in
// the console format when its log goes to a terminal. JSON stays the
// format everywhere else, and whenever --log-format or RECOVER_LOG_FORMAT
// asks for it.
func (c *config) forPeople(stderrIsTerminal bool) {
	if c.Dev && !c.logFormatSet && stderrIsTerminal {
		c.LogFormat = "console"
	}
}

// readGatewayConfig reads the sources of a GATEWAY_CONFIG file, as
// cmd/gateway does.
func readGatewayConfig(path string) ([]gateway.Source, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("GATEWAY_CONFIG: %w", err)
	}
	sources, err := gateway.ParseConfigFile(data)
	if err != nil {
		return nil, fmt.Errorf("GATEWAY_CONFIG %s: %w", path, err)
	}
	return sources, nil
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
