// Package console is the web console of recoverpasscode, served by the
// gateway: the fleet at a glance (throughput, jobs in flight, queue depth,
// dead letters, each tenant's learned budget, current rate and pause), jobs
// searched by ticket, device, batch, source, status and time, a job's
// result and every Graph attempt, a batch's progress and results, the DLQ
// with replay, a device's history, held jobs to release.
//
// People sign in with Entra ID (OpenID Connect, authorization code with
// PKCE, through golang.org/x/oauth2; the ID token is verified with
// go-oidc against the tenant's published keys, as the gateway verifies
// access tokens). The console's app registration defines two app roles:
// Console.Read lets a person see every page, Console.Operate also lets
// them act. Config.ReadOnly takes every action away whatever the roles say.
// The session is a cookie sealed with AES-GCM (Secure, HttpOnly,
// SameSite=Lax, __Host- prefixed) holding who signed in, never a token;
// every action is a POST carrying a CSRF token bound to the session, and is
// published as an audit event naming the person.
//
// Pages are rendered on the server with html/template; the stylesheet and
// a few lines of plain JavaScript (which refresh the live parts of a page)
// are embedded in the binary. Without JavaScript every page still works,
// reloaded by hand.
//
// # What the console does in NATS
//
// Besides what the gateway does, through the same connection: it reads the
// results, DLQ and audit streams through ordered consumers, the jobs
// stream by direct get, the stream and consumer infos, and the limits
// bucket (learned budgets, pauses, held records); it publishes the
// replayed jobs (<prefix>.jobs.<source>) and its audit events
// (<prefix>.audit.<source>), and writes pause keys and held records.
package console

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"golang.org/x/oauth2"

	"github.com/recoverpasscode/recoverpasscode/scan"
	"github.com/recoverpasscode/recoverpasscode/wire"
)

// Defaults of Config.
const (
	// DefaultAuthorityHost is Entra ID's public cloud.
	DefaultAuthorityHost = "https://login.microsoftonline.com"
	// DefaultSessionLifetime is how long a sign-in lasts.
	DefaultSessionLifetime = 8 * time.Hour
	// CallbackPath is where Entra ID sends the browser back with a code:
	// register BaseURL+CallbackPath as the app's web redirect URI.
	CallbackPath = "/auth/callback"
)

// DeviceHistory reads a device's audit trail from an index, newest first.
type DeviceHistory interface {
	Device(ctx context.Context, tenantID, deviceID string, limit int) ([]wire.AuditEvent, error)
}

// Config describes a console. JetStream, TenantID, ClientID and BaseURL are
// required; every other zero value has a documented default.
type Config struct {
	// JetStream is the connection to the system's streams and buckets.
	JetStream jetstream.JetStream
	// Prefix is the first subject token [RECOVER_PREFIX]. Defaults to
	// "recoverpasscode".
	Prefix string
	// TenantID is the Entra ID tenant people sign in with
	// [AZURE_TENANT_ID].
	TenantID string
	// ClientID is the console's app registration (a web app whose redirect
	// URI is BaseURL+CallbackPath, with the app roles Console.Read and
	// Console.Operate) [GATEWAY_CONSOLE_CLIENT_ID].
	ClientID string
	// ClientSecret authenticates the console to Entra ID when it redeems a
	// code [GATEWAY_CONSOLE_CLIENT_SECRET]. Optional: without it the code
	// is redeemed with PKCE alone, as a public client.
	ClientSecret string
	// AuthorityHost is Entra ID's host [AZURE_AUTHORITY_HOST]. Defaults to
	// https://login.microsoftonline.com.
	AuthorityHost string
	// BaseURL is the console's address as browsers reach it, e.g.
	// https://recoverpasscode.example.com [GATEWAY_CONSOLE_URL]. It must be
	// https, except on a loopback address (browsers treat
	// http://127.0.0.1 and http://localhost as secure).
	BaseURL string
	// ReadOnly takes every action away, whatever the roles say
	// [GATEWAY_CONSOLE_READONLY].
	ReadOnly bool
	// SessionKey seals the cookies; every replica behind one address needs
	// the same [GATEWAY_CONSOLE_SESSION_KEY, 32 bytes or more]. Defaults to
	// a random key: sessions then end when the process does.
	SessionKey []byte
	// SessionLifetime is how long a sign-in lasts. Defaults to 8h.
	SessionLifetime time.Duration
	// HTTPClient reaches Entra ID. Defaults to a client with a 10s timeout.
	HTTPClient *http.Client
	// History is the index of device histories. Without it the device page
	// says it is not available.
	History DeviceHistory
	// Name names this console in the audit events it publishes (their
	// worker field). Defaults to "console".
	Name string
	// Timeout bounds each NATS operation of a page. Defaults to 5s.
	Timeout time.Duration
	// Log receives lifecycle events and operator actions. Defaults to none.
	Log *zerolog.Logger
}

func (c *Config) defaults() {
	if c.Prefix == "" {
		c.Prefix = wire.DefaultPrefix
	}
	if c.AuthorityHost == "" {
		c.AuthorityHost = DefaultAuthorityHost
	}
	c.AuthorityHost = strings.TrimRight(c.AuthorityHost, "/")
	c.BaseURL = strings.TrimRight(c.BaseURL, "/")
	if c.SessionLifetime <= 0 {
		c.SessionLifetime = DefaultSessionLifetime
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	if c.Name == "" {
		c.Name = "console"
	}
	if c.Timeout <= 0 {
		c.Timeout = 5 * time.Second
	}
	if c.Log == nil {
		nop := zerolog.Nop()
		c.Log = &nop
	}
}

// ErrNoJetStream is reported by Validate when Config.JetStream is nil; a
// caller that checks the settings before connecting may skip it.
var ErrNoJetStream = errors.New("console: a JetStream connection is required")

// Validate reports every setting that cannot work.
func (c Config) Validate() error {
	c.defaults()
	var errs []error
	if c.JetStream == nil {
		errs = append(errs, ErrNoJetStream)
	}
	if !wire.IsGUID(c.TenantID) {
		errs = append(errs, fmt.Errorf("AZURE_TENANT_ID %q: want the tenant's GUID, whose people sign in to the console", wire.Truncate(c.TenantID, 64)))
	}
	if !wire.IsGUID(c.ClientID) {
		errs = append(errs, fmt.Errorf("GATEWAY_CONSOLE_CLIENT_ID %q: want the console's application (client) id", wire.Truncate(c.ClientID, 64)))
	}
	if err := checkBaseURL(c.BaseURL); err != nil {
		errs = append(errs, err)
	}
	if c.SessionKey != nil && len(c.SessionKey) < 32 {
		errs = append(errs, errors.New("GATEWAY_CONSOLE_SESSION_KEY: want at least 32 bytes (e.g. openssl rand -base64 32)"))
	}
	if !strings.HasPrefix(c.AuthorityHost, "https://") {
		errs = append(errs, fmt.Errorf("AZURE_AUTHORITY_HOST %q: want an https:// URL", c.AuthorityHost))
	}
	return errors.Join(errs...)
}

// checkBaseURL requires https, or http on loopback, and no path.
func checkBaseURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
		return fmt.Errorf("GATEWAY_CONSOLE_URL %q: want the console's origin, e.g. https://recoverpasscode.example.com", raw)
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		host := u.Hostname()
		if ip := net.ParseIP(host); host == "localhost" || (ip != nil && ip.IsLoopback()) {
			return nil
		}
	}
	return fmt.Errorf("GATEWAY_CONSOLE_URL %q: the console's cookies are Secure: serve it over https (http only on 127.0.0.1 or localhost)", raw)
}

// Server is the console, an http.Handler. It is safe for concurrent use.
type Server struct {
	cfg    Config
	names  wire.Names
	js     jetstream.JetStream
	seal   *sealer
	log    zerolog.Logger
	mux    *http.ServeMux
	oauth  oauth2.Config
	issuer string

	mu            sync.Mutex
	verifier      *oidc.IDTokenVerifier
	provider      *oidc.Provider
	overviewCache *overviewData
}

// New checks cfg and returns a console ready to serve. It makes no network
// call: Entra ID's discovery document is read at the first sign-in.
func New(cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.defaults()
	key := cfg.SessionKey
	if key == nil {
		key = []byte(randomText() + randomText())
	}
	seal, err := newSealer(key)
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg:    cfg,
		names:  wire.Names{Prefix: cfg.Prefix},
		js:     cfg.JetStream,
		seal:   seal,
		log:    cfg.Log.With().Str("component", "console").Logger(),
		issuer: cfg.AuthorityHost + "/" + url.PathEscape(strings.ToLower(cfg.TenantID)) + "/v2.0",
	}
	s.oauth = oauth2.Config{
		ClientID:     cfg.ClientID,
		ClientSecret: cfg.ClientSecret,
		RedirectURL:  cfg.BaseURL + CallbackPath,
		Scopes:       []string{oidc.ScopeOpenID, "profile"},
	}
	s.mux = s.routes()
	return s, nil
}

// RedirectURI is the web redirect URI to register for the console's app.
func (s *Server) RedirectURI() string { return s.oauth.RedirectURL }

// ServeHTTP serves the console's pages, actions and assets.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self' "+s.cfg.AuthorityHost+"; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	s.mux.ServeHTTP(w, r)
}

// routes is every path of the console. Pages need a reader; actions (POST)
// need an operator, a writable console and the session's CSRF token.
func (s *Server) routes() *http.ServeMux {
	m := http.NewServeMux()
	m.Handle("GET /static/", staticHandler())
	m.HandleFunc("GET /signin", s.signIn)
	m.HandleFunc("GET "+CallbackPath, s.callback)
	m.HandleFunc("POST /signout", s.signOut)

	page := func(pattern string, h func(http.ResponseWriter, *http.Request, *session)) {
		m.HandleFunc(pattern, s.reader(h))
	}
	action := func(pattern string, h func(http.ResponseWriter, *http.Request, *session)) {
		m.HandleFunc(pattern, s.operator(h))
	}
	page("GET /{$}", s.overview)
	page("GET /live/overview", s.overviewFragment)
	page("GET /jobs", s.jobs)
	page("GET /jobs/{id}", s.job)
	page("GET /batches", s.batches)
	page("GET /batches/{source}/{name}", s.batchPage)
	page("GET /live/batches/{source}/{name}", s.batchFragment)
	page("GET /batches/{source}/{name}/results.csv", s.batchCSV)
	page("GET /dlq", s.dlqPage)
	page("GET /dlq/replay", s.replayConfirm)
	page("GET /devices/{tenant}/{device}", s.device)
	page("GET /devices", s.deviceLookup)
	page("GET /held", s.heldPage)
	action("POST /dlq/replay", s.replay)
	action("POST /held/release", s.release)
	action("POST /tenants/pause", s.pause)
	action("POST /tenants/resume", s.resume)
	m.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.renderError(w, r, nil, http.StatusNotFound, "There is no such page.")
	})
	return m
}

// reader admits a signed-in person with a console role; others are sent
// to sign in, or told they have no role.
func (s *Server) reader(h func(http.ResponseWriter, *http.Request, *session)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		sess := s.sessionOf(r)
		if sess == nil {
			if r.Method == http.MethodGet && !strings.HasPrefix(r.URL.Path, "/live/") {
				http.Redirect(w, r, "/signin?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
				return
			}
			s.renderError(w, r, nil, http.StatusUnauthorized, "Your session has ended: sign in again.")
			return
		}
		if !sess.canRead() {
			s.renderError(w, r, sess, http.StatusForbidden, "You are signed in as "+sess.UPN+", who holds neither the Console.Read nor the Console.Operate app role of the console. Ask an administrator to assign one (Enterprise applications → Users and groups).")
			return
		}
		h(w, r, sess)
	}
}

// operator admits an action: a reader who is an operator, on a console
// that is not read-only, with the session's CSRF token.
func (s *Server) operator(h func(http.ResponseWriter, *http.Request, *session)) http.HandlerFunc {
	return s.reader(func(w http.ResponseWriter, r *http.Request, sess *session) {
		r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
		if err := r.ParseForm(); err != nil {
			s.renderError(w, r, sess, http.StatusBadRequest, "The form could not be read.")
			return
		}
		switch {
		case !s.seal.validCSRF(sess, r.PostForm.Get("csrf")):
			s.renderError(w, r, sess, http.StatusForbidden, "This action was refused: its form did not carry this session's token (it may come from another site, or from before you signed in again). Go back, reload the page and try again.")
		case s.cfg.ReadOnly:
			s.renderError(w, r, sess, http.StatusForbidden, "This console is read-only (GATEWAY_CONSOLE_READONLY): actions are taken with the enqueue command or another console.")
		case !sess.canOperate():
			s.renderError(w, r, sess, http.StatusForbidden, "Only operators (app role Console.Operate) may do this; you are a reader.")
		default:
			h(w, r, sess)
		}
	})
}

// canAct reports whether the page should offer actions to the person.
func (s *Server) canAct(sess *session) bool { return !s.cfg.ReadOnly && sess.canOperate() }

// sessionOf returns the session of the request's cookie, nil when there is
// none or it has expired.
func (s *Server) sessionOf(r *http.Request) *session {
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return nil
	}
	var sess session
	if s.seal.open(sessionCookie, c.Value, &sess) != nil || time.Now().Unix() > sess.Expires {
		return nil
	}
	return &sess
}

// ctx bounds a page's NATS work.
func (s *Server) ctx(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), 4*s.cfg.Timeout)
}

// streams reads the streams for the pages.
func (s *Server) streams() scan.Reader {
	return scan.Reader{JS: s.js, Timeout: s.cfg.Timeout}
}
