// Package graphsim is a Microsoft Graph and Entra ID double for the Intune
// recoverPasscode action, served over TLS on loopback.
//
// It backs the tests of every other package and `worker --dev`, so it aims to
// behave like the real services where a client can observe it:
//
//   - The authority serves the OpenID Connect discovery document and the
//     OAuth 2.0 token endpoint that MSAL Go uses, with instance discovery
//     disabled and an authority of AuthorityHost()+"/"+tenantID. Apps
//     authenticate with a client secret, a certificate-signed client
//     assertion or a federated (workload identity) assertion; users sign in
//     with the device code grant, or in a browser with the OpenID Connect
//     authorization code flow and PKCE (AddRedirectURI; a user registered
//     with an empty password signs in with one click, and app roles
//     assigned with AssignUserAppRole come in its signed ID token), and
//     stay signed in with refresh tokens.
//     Failures answer with Entra's error shape and AADSTS codes. For an API
//     registered with AddAPI the token is an RS256-signed JWT, verifiable
//     against the published keys (JWKSURL), with the app roles assigned to
//     the client (AssignAppRole); RotateSigningKey rolls the key over.
//   - Graph serves the three recoverPasscode paths under GraphURL(), checks
//     the bearer token, validates the request the way Graph does, enforces
//     Intune's sliding-window limits per app per tenant and per tenant, and
//     answers errors with Graph's JSON error shape.
//   - Tests inject faults (status codes, Retry-After, hangs, connection
//     resets, failures after the action ran) and observe every call.
//
// Tenant IDs, client IDs and device IDs are compared case-insensitively and
// reported in lower case, as MSAL lower-cases its authority.
//
// Every method of Server is safe for concurrent use.
package graphsim

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"time"
)

// Config describes a Server. The zero value gives Intune's documented limits,
// no added latency and one-hour access tokens on random loopback ports.
type Config struct {
	// Limit is the number of recoverPasscode calls one app may make in one
	// tenant in any Window; the call over it is answered 429 TooManyRequests.
	// Defaults to 200. A negative value disables the limit.
	Limit int
	// TenantLimit is the number of recoverPasscode calls all apps together
	// may make in one tenant in any Window. Defaults to twice Limit (Intune
	// allows 400 per tenant against 200 per app). A negative value disables
	// the limit.
	TenantLimit int
	// Window is the length of the sliding window of both limits.
	// Defaults to 20s.
	Window time.Duration
	// Latency is added to every Graph call, after the call has been decided
	// and before it is answered, so a client that gives up during it leaves
	// the action performed. Defaults to 0. SetLatency changes it later.
	Latency time.Duration
	// TokenLifetime is the lifetime of the access tokens the authority
	// issues. Defaults to 1h. MSAL does not cache tokens that expire within
	// five minutes, so a shorter lifetime makes MSAL ask for a token on
	// every acquisition.
	TokenLifetime time.Duration
	// GraphAddr is the loopback host:port the Graph listener binds, for a
	// --dev user who wants a stable URL. Defaults to "127.0.0.1:0" (a random
	// port). The certificate covers 127.0.0.1, ::1 and localhost.
	GraphAddr string
	// AuthorityAddr is the loopback host:port the Entra ID listener binds.
	// Defaults to "127.0.0.1:0" (a random port).
	AuthorityAddr string
	// ReadLimit is the number of reads (GETs of managed devices) one app
	// may make in one tenant in any Window, separate from Limit: Intune
	// allows 2,000 requests per 20 s per app per tenant. Defaults to 2000.
	// A negative value disables the limit.
	ReadLimit int
	// CheckIn says, for a device sent a recoverPasscode action, how long
	// after the action starts the device checks in and what state the
	// action then ends in ("done", "failed", "canceled", "notSupported";
	// "" for never: it stays pending). SetDeviceCheckIn overrides it per
	// device. Defaults to CheckInDelay and "done".
	CheckIn func(deviceID string) (time.Duration, string)
	// CheckInDelay is the default CheckIn's delay. Defaults to 0: the
	// device carries the action out at once.
	CheckInDelay time.Duration
	// Logf, when set, receives one line per Graph call and per token request.
	// Lines never hold secrets, assertions or tokens.
	Logf func(format string, args ...any)
}

func (c Config) withDefaults() Config {
	if c.Limit == 0 {
		c.Limit = 200
	}
	if c.TenantLimit == 0 {
		c.TenantLimit = 2 * c.Limit
		if c.Limit < 0 {
			c.TenantLimit = -1
		}
	}
	if c.Window <= 0 {
		c.Window = 20 * time.Second
	}
	if c.ReadLimit == 0 {
		c.ReadLimit = 2000
	}
	if c.CheckIn == nil {
		delay := c.CheckInDelay
		c.CheckIn = func(string) (time.Duration, string) { return delay, "done" }
	}
	if c.TokenLifetime <= 0 {
		c.TokenLifetime = time.Hour
	}
	if c.GraphAddr == "" {
		c.GraphAddr = "127.0.0.1:0"
	}
	if c.AuthorityAddr == "" {
		c.AuthorityAddr = "127.0.0.1:0"
	}
	if c.Logf == nil {
		c.Logf = func(string, ...any) {}
	}
	return c
}

// ErrClosed is returned by a method that waits (WaitCalls, WaitDeviceCode)
// when the Server closes while it waits.
var ErrClosed = errors.New("graphsim: server closed")

// certLifetime bounds how long a Server's certificates stay valid; a --dev
// session longer than this needs a restart.
const certLifetime = 30 * 24 * time.Hour

// Server is a running Graph and Entra ID double. Its zero value is not
// usable: create one with New or Start and stop it with Close. It is safe for
// concurrent use.
type Server struct {
	cfg          Config
	cert         *authorityCert
	graph        *httptest.Server
	authority    *httptest.Server
	graphURL     string
	authorityURL string
	closing      chan struct{}
	closeOnce    sync.Once
	latency      atomic.Int64 // time.Duration

	mu         sync.Mutex
	dir        directory
	tokens     tokenStore
	web        webSignIn
	tokenDown  bool
	tokenCalls []TokenCall
	faults     faultState
	limits     *limiter
	devs       devices
	log        callLog
	changed    chan struct{} // closed and replaced on every change; see waitFor

	signing signingKeys // has its own lock
}

// New starts a Server and panics if it cannot, like httptest.NewServer.
// Tests use New; `worker --dev` uses Start to report the error instead.
func New(cfg Config) *Server {
	s, err := Start(cfg)
	if err != nil {
		panic(err)
	}
	return s
}

// Start starts the Graph and Entra ID listeners described by cfg.
func Start(cfg Config) (*Server, error) {
	cfg = cfg.withDefaults()
	cert, err := newAuthorityCert(certLifetime)
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg:     cfg,
		cert:    cert,
		closing: make(chan struct{}),
		dir:     newDirectory(),
		tokens:  newTokenStore(),
		web:     newWebSignIn(),
		faults:  newFaultState(),
		limits:  newLimiter(cfg.Limit, cfg.TenantLimit, cfg.Window),
		devs:    newDevices(cfg),
		log:     newCallLog(),
		changed: make(chan struct{}),
	}
	s.latency.Store(int64(cfg.Latency))

	// Both addresses are known before either listener serves, so each
	// handler can name the other service.
	authLn, err := net.Listen("tcp", cfg.AuthorityAddr)
	if err != nil {
		return nil, fmt.Errorf("graphsim: listen on %s: %w", cfg.AuthorityAddr, err)
	}
	graphLn, err := net.Listen("tcp", cfg.GraphAddr)
	if err != nil {
		_ = authLn.Close()
		return nil, fmt.Errorf("graphsim: listen on %s: %w", cfg.GraphAddr, err)
	}
	s.authorityURL = "https://" + authLn.Addr().String()
	s.graphURL = "https://" + graphLn.Addr().String()
	s.authority = s.serve(authLn, http.HandlerFunc(s.serveAuthority))
	s.graph = s.serve(graphLn, http.HandlerFunc(s.serveGraph))
	return s, nil
}

// serve serves h over TLS on ln with the Server's certificate. HTTP/1.1
// only, so that a Reset fault can hijack the connection.
func (s *Server) serve(ln net.Listener, h http.Handler) *httptest.Server {
	srv := &httptest.Server{
		Listener: ln,
		Config: &http.Server{
			Handler:  h,
			ErrorLog: log.New(io.Discard, "", 0),
		},
		TLS: &tls.Config{
			Certificates: []tls.Certificate{s.cert.leaf},
			MinVersion:   tls.VersionTLS12,
		},
	}
	srv.StartTLS()
	return srv
}

// Close stops both listeners. Calls held by a Hang fault or by latency are
// released first, so Close returns once every handler has finished. Close
// may be called more than once.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		close(s.closing)
		s.graph.Close()
		s.authority.Close()
	})
}

// GraphURL is the Graph root including its version, for example
// https://127.0.0.1:40123/v1.0, the equivalent of GRAPH_BASE_URL.
func (s *Server) GraphURL() string { return s.graphURL + "/v1.0" }

// AuthorityHost is the Entra ID host URL, for example https://127.0.0.1:40124,
// the equivalent of AZURE_AUTHORITY_HOST. MSAL's authority is this plus
// "/" and the tenant ID.
func (s *Server) AuthorityHost() string { return s.authorityURL }

// Client returns a new HTTP client that trusts the Server's certificate.
// Each call returns a client with its own transport, so a caller may set its
// Timeout or close its idle connections without affecting others.
func (s *Server) Client() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.TLSClientConfig = &tls.Config{RootCAs: s.CertPool(), MinVersion: tls.VersionTLS12}
	// Tests call from many goroutines at once; keeping their connections
	// saves a TLS handshake per call.
	t.MaxIdleConnsPerHost = 64
	return &http.Client{Transport: t}
}

// CertPool returns a new pool holding the CA that signs the Server's
// certificate.
func (s *Server) CertPool() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(s.cert.caCert)
	return pool
}

// CACertPEM returns the PEM encoding of the CA that signs the Server's
// certificate, for a file named by SSL_CERT_FILE. The CA is created for this
// Server alone and its key never leaves the process.
func (s *Server) CACertPEM() []byte {
	return append([]byte(nil), s.cert.caPEM...)
}

// SetLatency changes the latency added to every Graph call from now on.
func (s *Server) SetLatency(d time.Duration) { s.latency.Store(int64(d)) }

// wait blocks for d, or until the request's client goes away or the Server
// closes. It reports whether the full duration passed.
func (s *Server) wait(r *http.Request, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-r.Context().Done():
		return false
	case <-s.closing:
		return false
	}
}
