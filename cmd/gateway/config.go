package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/recoverpasscode/recoverpasscode/gateway"
	"github.com/recoverpasscode/recoverpasscode/internal/envflag"
	"github.com/recoverpasscode/recoverpasscode/queue"
	"github.com/recoverpasscode/recoverpasscode/wire"
)

// config is what the gateway reads from flags and the environment.
type config struct {
	Addr         string
	ConfigFile   string
	SourcesEnv   string
	Audiences    string
	Tenants      string
	DrainTimeout time.Duration
	LogFormat    string
	LogLevel     string
	NATS         queue.Conn
	Console      consoleFlags
	// Gateway is the configuration of the server but its connection.
	Gateway gateway.Config
}

const usageHeader = `gateway is the HTTP door of recoverpasscode: ticketing systems and automation submit
recoverPasscode jobs and follow them over HTTP (POST /v1/jobs, GET /v1/jobs/{id}, GET /v1/jobs,
GET /v1/batches/{name}; GET /v1/openapi.json describes them). It publishes to the workers'
NATS JetStream queue and holds no Graph credential. It also delivers every result of a source
back to it: to its webhooks (signed, Standard Webhooks), as a ServiceNow work note and as a Jira
comment, at least once, from durable JetStream consumers that every gateway replica shares.

Usage:
  gateway [flags]           serve on GATEWAY_HTTP_ADDR
  gateway hash-key [flags]  make a new API key and print it with its hash (see gateway hash-key --help)

Who may call is configured per source (the <source> of recoverpasscode.jobs.<source>):

  GATEWAY_CONFIG names a YAML file:
    sources:
      ticketing:
        apiKeys: ["sha256:<hex>"]         # hashes from gateway hash-key; several, to rotate keys
        entraApps: ["<client id>"]        # Entra applications whose access tokens name this source
        webhooks: [{url: "https://…", secret: "whsec_…"}]   # write-back: each result POSTed, signed
        servicenow: {instance: "https://….service-now.com", user: …, passwordFile: …}  # a work note
        jira: {site: "https://….atlassian.net", email: …, apiTokenFile: …}           # a comment
      (every key of webhooks, servicenow and jira: see the README, "Results back in the ticket")
  GATEWAY_SOURCES is the same in short, for small setups: comma-separated
    <source>=sha256:<hex> (an API key's hash) and <source>=app:<client id> pairs, e.g.
    ticketing=sha256:9f86…,ticketing=sha256:2c26…,automation=app:6f1c…
  Both may be set: a source gets the credentials of both.

Callers send Authorization: Bearer <API key> (or X-API-Key: <key>), or an Entra ID access token:
a v2.0 token of AZURE_TENANT_ID for the scope <GATEWAY_AUDIENCE's application ID URI>/.default,
whose roles hold GATEWAY_ROLE. Trust for a private CA (of NATS or AZURE_AUTHORITY_HOST) comes
from the standard SSL_CERT_FILE.

With GATEWAY_CONSOLE_CLIENT_ID set, the gateway also serves the web console at / (see the README,
"The console"): people sign in with Entra ID (an app registration with the web redirect URI
GATEWAY_CONSOLE_URL/auth/callback and the app roles Console.Read and Console.Operate).

Every flag can also be set by the environment variable in brackets; a flag wins.

Flags:
`

// parseConfig reads args and the environment, and the GATEWAY_CONFIG file.
func parseConfig(args []string, stderr io.Writer) (*config, error) {
	fs := flag.NewFlagSet("gateway", flag.ContinueOnError)
	fs.SetOutput(stderr)
	s := envflag.New(fs)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usageHeader)
		fs.PrintDefaults()
	}
	c := &config{}
	g := &c.Gateway
	s.StringVar(&c.Addr, "http-addr", "GATEWAY_HTTP_ADDR", gateway.DefaultAddr, "address the API, /healthz, /readyz and /metrics are served on")
	s.StringVar(&c.ConfigFile, "config", "GATEWAY_CONFIG", "", "YAML file naming the sources and their credentials (see above)")
	s.StringVar(&c.SourcesEnv, "sources", "GATEWAY_SOURCES", "", "sources in short: <source>=sha256:<hex> and <source>=app:<client id>, comma-separated")
	s.StringVar(&c.Audiences, "audience", "GATEWAY_AUDIENCE", "", "accepted audiences of access tokens, comma-separated: the API's application (client) id (and its application ID URI for v1.0 tokens); required with entraApps")
	s.StringVar(&g.Role, "role", "GATEWAY_ROLE", gateway.DefaultRole, "app role an access token must hold")
	s.StringVar(&g.TenantID, "tenant-id", "AZURE_TENANT_ID", "", "the tenant: default of jobs that name none, and whose access tokens are accepted (required)")
	s.StringVar(&c.Tenants, "tenants", "RECOVER_TENANTS", "", "comma-separated tenants jobs may target, as the workers allow (defaults to AZURE_TENANT_ID)")
	s.StringVar(&g.AuthorityHost, "authority-host", "AZURE_AUTHORITY_HOST", gateway.DefaultAuthorityHost, "Entra ID host: tokens are issued by <host>/<tenant>/v2.0")
	s.StringVar(&g.Prefix, "prefix", "RECOVER_PREFIX", wire.DefaultPrefix, "first token of every subject, and base of stream and bucket names")
	s.DurationVar(&c.DrainTimeout, "drain-timeout", "GATEWAY_DRAIN_TIMEOUT", 30*time.Second, "on SIGTERM, how long requests in flight (a Prefer: wait among them) may finish")
	s.StringVar(&c.LogFormat, "log-format", "RECOVER_LOG_FORMAT", "json", "json, or console for people")
	s.StringVar(&c.LogLevel, "log-level", "RECOVER_LOG_LEVEL", "info", "debug, info, warn or error")
	s.BoolVar(&g.Pprof, "pprof", "RECOVER_PPROF", false, "also serve Go's profiler under /debug/pprof/ on the HTTP address, unauthenticated (for measurements; keep that address private)")
	c.NATS.Flags(s)
	c.Console.define(s)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q (see --help)", fs.Arg(0))
	}
	var errs []error
	if err := s.Err(); err != nil {
		errs = append(errs, err)
	}
	g.Audiences = splitList(c.Audiences)
	g.Tenants = splitList(c.Tenants)
	sources, err := c.sources()
	if err != nil {
		errs = append(errs, err)
	}
	g.Sources = sources
	if err := c.NATS.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := validateWithoutNATS(*g); err != nil {
		errs = append(errs, err)
	}
	if err := c.Console.check(*g); err != nil {
		errs = append(errs, err)
	}
	if c.DrainTimeout <= 0 {
		errs = append(errs, errors.New("GATEWAY_DRAIN_TIMEOUT: want a positive duration such as 30s"))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return c, nil
}

// sources reads GATEWAY_CONFIG and GATEWAY_SOURCES and joins them.
func (c *config) sources() ([]gateway.Source, error) {
	var lists [][]gateway.Source
	if c.ConfigFile != "" {
		data, err := os.ReadFile(c.ConfigFile)
		if err != nil {
			return nil, fmt.Errorf("GATEWAY_CONFIG: %w", err)
		}
		list, err := gateway.ParseConfigFile(data)
		if err != nil {
			return nil, fmt.Errorf("GATEWAY_CONFIG %s: %w", c.ConfigFile, err)
		}
		lists = append(lists, list)
	}
	if c.SourcesEnv != "" {
		list, err := gateway.ParseSourcesEnv(c.SourcesEnv)
		if err != nil {
			return nil, err
		}
		lists = append(lists, list)
	}
	if len(lists) == 0 {
		return nil, errors.New("no source is configured: set GATEWAY_CONFIG or GATEWAY_SOURCES (gateway hash-key makes an API key and its hash)")
	}
	return gateway.MergeSources(lists...)
}

// validateWithoutNATS checks the configuration before there is a
// connection, so that a mistake is reported before connecting.
func validateWithoutNATS(g gateway.Config) error {
	var errs []error
	for _, err := range splitJoined(g.Validate()) {
		if !errors.Is(err, gateway.ErrNoNATS) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func splitJoined(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
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
