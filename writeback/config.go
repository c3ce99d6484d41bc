package writeback

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/recoverpasscode/recoverpasscode/wire"
)

// Source is the write-back of one source: where its results go. Its YAML
// form is the webhooks, servicenow and jira keys of a source in
// GATEWAY_CONFIG (see the package documentation).
type Source struct {
	// Name is the source, one subject token: its results are those on
	// <prefix>.results.<Name>.>.
	Name string `yaml:"-"`
	// Webhooks receive every result of the source, signed.
	Webhooks []Webhook `yaml:"webhooks"`
	// ServiceNow, when set, gets a work note on the record whose number is
	// the result's ticket.
	ServiceNow *ServiceNow `yaml:"servicenow"`
	// Jira, when set, gets a comment on the issue whose key is the result's
	// ticket.
	Jira *Jira `yaml:"jira"`
}

// Webhook is an endpoint every result of its source is POSTed to, signed
// per the Standard Webhooks specification. The URL comes from the
// configuration only, never from a job.
type Webhook struct {
	// Name names the endpoint in metrics, logs, its durable consumer and
	// `enqueue deliveries`: 1 to 32 lower-case letters, digits and '-',
	// unique within the source. Defaults to "webhook-" and 8 hex digits of
	// the URL's SHA-256, so changing the URL makes a new endpoint unless a
	// name is given.
	Name string `yaml:"name"`
	// URL is an https:// URL, or http:// to a loopback address. It must not
	// hold a user or password; a query (some receivers take a key there) is
	// kept out of logs and errors.
	URL string `yaml:"url"`
	// Secret is the signing secret, whsec_<base64 of 24 to 64 bytes>; or
	// SecretFile names a file holding it. One of the two is required.
	Secret     string `yaml:"secret"`
	SecretFile string `yaml:"secretFile"`
	// PreviousSecret (or PreviousSecretFile), during a rotation, is the
	// secret being retired: each delivery then carries two signatures, so
	// the receiver may switch to the new secret at its own pace.
	PreviousSecret     string `yaml:"previousSecret"`
	PreviousSecretFile string `yaml:"previousSecretFile"`
}

// ServiceNow writes each result of its source as a work note on the record
// of Table whose number is the result's ticket, through the Table API.
// Authentication is basic (User and Password) or OAuth client credentials
// (ClientID and ClientSecret), not both.
type ServiceNow struct {
	// Name names the endpoint, as Webhook.Name. Defaults to "servicenow".
	Name string `yaml:"name"`
	// Instance is the instance's URL, e.g. https://example.service-now.com
	// (http:// only to a loopback address).
	Instance string `yaml:"instance"`
	// Table holds the records: lower-case letters, digits and '_'.
	// Defaults to "incident".
	Table string `yaml:"table"`
	// User and Password (or PasswordFile) authenticate with basic auth.
	User         string `yaml:"user"`
	Password     string `yaml:"password"`
	PasswordFile string `yaml:"passwordFile"`
	// ClientID and ClientSecret (or ClientSecretFile) authenticate with
	// OAuth client credentials at TokenURL.
	ClientID         string `yaml:"clientId"`
	ClientSecret     string `yaml:"clientSecret"`
	ClientSecretFile string `yaml:"clientSecretFile"`
	// TokenURL is the OAuth token endpoint. Defaults to
	// <Instance>/oauth_token.do.
	TokenURL string `yaml:"tokenUrl"`
}

// Jira writes each result of its source as a comment on the issue whose key
// is the result's ticket, through the REST API v3 (the body in Atlassian
// Document Format). Authentication is an account's email and API token, or
// a bearer token, not both.
type Jira struct {
	// Name names the endpoint, as Webhook.Name. Defaults to "jira".
	Name string `yaml:"name"`
	// Site is the URL the REST API is under: https://<site>.atlassian.net
	// with an API token, https://api.atlassian.com/ex/jira/<cloud id> with
	// an OAuth 2.0 bearer token (http:// only to a loopback address).
	Site string `yaml:"site"`
	// Email and APIToken (or APITokenFile) authenticate with basic auth.
	Email        string `yaml:"email"`
	APIToken     string `yaml:"apiToken"`
	APITokenFile string `yaml:"apiTokenFile"`
	// Bearer (or BearerFile) is a bearer token.
	Bearer     string `yaml:"bearer"`
	BearerFile string `yaml:"bearerFile"`
	// Public makes the comment visible to the customer of a Jira Service
	// Management request. Defaults to false: an internal note for agents.
	Public bool `yaml:"public"`
}

// Config configures a Deliverer. Only Sources is required; every other
// field has a default.
type Config struct {
	// Names derives the subjects, streams and buckets. Defaults to the
	// default prefix.
	Names wire.Names
	// Sources are the write-backs, one per source that has any.
	Sources []Source
	// Timeout bounds one attempt (one HTTP request; a ServiceNow work note
	// takes two). Defaults to 15s, as the Standard Webhooks specification
	// recommends.
	Timeout time.Duration
	// RetryFor is how long a result is retried after it was stored before
	// its delivery is given up and kept as failed. Defaults to 24h.
	RetryFor time.Duration
	// ClientErrorAttempts is how many attempts a result may have had when
	// an answer other than 410 in 3xx or 4xx (but 408, 425 and 429, which
	// are retried like 5xx) ends its delivery as failed. Defaults to 5.
	ClientErrorAttempts int
	// MinBackoff and MaxBackoff bound the exponential backoff between
	// attempts (doubling, with ±50% jitter; a longer Retry-After is
	// honoured up to MaxBackoff). Default to 1s and 1h.
	MinBackoff, MaxBackoff time.Duration
	// Concurrency is the number of deliveries in flight per endpoint and
	// process. Defaults to 8.
	Concurrency int
	// MaxAckPending bounds the results of one endpoint delivered but not
	// yet acknowledged across every process, those waiting for a retry
	// included. Defaults to 1000.
	MaxAckPending int
	// AckWait is how long a delivery may take before JetStream hands its
	// result to another process (one that died leaves its deliveries this
	// long). Defaults to Timeout plus 15s.
	AckWait time.Duration
	// FetchWait bounds one pull; it is also how long Run may take to stop
	// pulling once its context ends. Defaults to 1s.
	FetchWait time.Duration
	// SampleInterval is how often each endpoint's backlog and failed
	// deliveries are measured for the metrics. Defaults to 15s.
	SampleInterval time.Duration
	// TLS is the client TLS configuration of every endpoint, for a private
	// CA. Defaults to the system's roots (and SSL_CERT_FILE).
	TLS *tls.Config
	// Registerer, when set, receives the delivery metrics.
	Registerer prometheus.Registerer
	// Logger receives lifecycle events at info and each failed attempt at
	// debug. It never receives a secret, a token or a URL's query.
	Logger zerolog.Logger
}

func (c *Config) defaults() {
	if c.Timeout <= 0 {
		c.Timeout = 15 * time.Second
	}
	if c.RetryFor <= 0 {
		c.RetryFor = 24 * time.Hour
	}
	if c.ClientErrorAttempts <= 0 {
		c.ClientErrorAttempts = 5
	}
	if c.MinBackoff <= 0 {
		c.MinBackoff = time.Second
	}
	if c.MaxBackoff <= 0 {
		c.MaxBackoff = time.Hour
	}
	if c.MaxBackoff < c.MinBackoff {
		c.MaxBackoff = c.MinBackoff
	}
	if c.Concurrency <= 0 {
		c.Concurrency = 8
	}
	if c.MaxAckPending <= 0 {
		c.MaxAckPending = 1000
	}
	if c.AckWait <= 0 {
		c.AckWait = c.Timeout + 15*time.Second
	}
	if c.FetchWait <= 0 {
		c.FetchWait = time.Second
	}
	if c.SampleInterval <= 0 {
		c.SampleInterval = 15 * time.Second
	}
}

// Validate reports every configuration error, each naming the source and
// the field to fix. It reads the secret files, so that a missing or
// malformed one is reported at start. No error quotes a secret.
func (c Config) Validate() error {
	_, err := c.endpoints()
	return err
}

// Kinds of endpoint.
const (
	KindWebhook    = "webhook"
	KindServiceNow = "servicenow"
	KindJira       = "jira"
)

// endpointSpec is one validated endpoint with its secrets read.
type endpointSpec struct {
	source, name, kind string
	webhook            *webhookSpec
	servicenow         *servicenowSpec
	jira               *jiraSpec
}

// endpoints validates the configuration and returns its endpoints.
func (c Config) endpoints() ([]endpointSpec, error) {
	var errs []error
	var out []endpointSpec
	seen := map[string]bool{}
	for _, s := range c.Sources {
		if !wire.ValidToken(s.Name) {
			errs = append(errs, fmt.Errorf("source %q: a source name is one subject token: 1 to 64 letters, digits, '-' or '_'", wire.Truncate(s.Name, 64)))
			continue
		}
		if seen[s.Name] {
			errs = append(errs, fmt.Errorf("source %s: named twice", s.Name))
			continue
		}
		seen[s.Name] = true
		specs, err := s.endpoints()
		if err != nil {
			errs = append(errs, err)
		}
		out = append(out, specs...)
	}
	return out, errors.Join(errs...)
}

func (s Source) endpoints() ([]endpointSpec, error) {
	var errs []error
	var out []endpointSpec
	names := map[string]string{}
	add := func(where, name, kind string, spec endpointSpec) {
		if !validEndpointName(name) {
			errs = append(errs, fmt.Errorf("source %s: %s: name %q: want 1 to 32 lower-case letters, digits or '-', starting with a letter or digit", s.Name, where, wire.Truncate(name, 40)))
			return
		}
		if other, dup := names[name]; dup {
			errs = append(errs, fmt.Errorf("source %s: %s: endpoint name %q is also %s's: give one of them another name", s.Name, where, name, other))
			return
		}
		names[name] = where
		spec.source, spec.name, spec.kind = s.Name, name, kind
		out = append(out, spec)
	}
	for i, w := range s.Webhooks {
		where := fmt.Sprintf("webhooks[%d]", i)
		spec, err := w.spec()
		if err != nil {
			errs = append(errs, fmt.Errorf("source %s: %s: %w", s.Name, where, err))
			continue
		}
		add(where, w.endpointName(), KindWebhook, endpointSpec{webhook: spec})
	}
	if s.ServiceNow != nil {
		spec, err := s.ServiceNow.spec()
		if err != nil {
			errs = append(errs, fmt.Errorf("source %s: servicenow: %w", s.Name, err))
		} else {
			add("servicenow", orDefault(s.ServiceNow.Name, KindServiceNow), KindServiceNow, endpointSpec{servicenow: spec})
		}
	}
	if s.Jira != nil {
		spec, err := s.Jira.spec()
		if err != nil {
			errs = append(errs, fmt.Errorf("source %s: jira: %w", s.Name, err))
		} else {
			add("jira", orDefault(s.Jira.Name, KindJira), KindJira, endpointSpec{jira: spec})
		}
	}
	return out, errors.Join(errs...)
}

// endpointName is the webhook's name, or one derived from its URL.
func (w Webhook) endpointName() string {
	if w.Name != "" {
		return w.Name
	}
	sum := sha256.Sum256([]byte(w.URL))
	return "webhook-" + hex.EncodeToString(sum[:4])
}

// validEndpointName reports whether s can name an endpoint. It has no '_',
// so that the consumer name writeback_<source>_<endpoint> is unambiguous.
func validEndpointName(s string) bool {
	if s == "" || len(s) > 32 || s[0] == '-' {
		return false
	}
	for _, r := range s {
		if !(r == '-' || (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9')) {
			return false
		}
	}
	return true
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
