package gateway

import (
	"context"
	"errors"
	"fmt"
	stdlog "log"
	"net"
	"net/http"
	"net/http/pprof"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"

	"github.com/recoverpasscode/recoverpasscode/wire"
)

// Server is the HTTP gateway: a stateless http.Handler over NATS. Any
// number of them may serve the same system. It is safe for concurrent use.
type Server struct {
	cfg     Config
	names   wire.Names
	policy  wire.Policy
	nc      *nats.Conn
	store   *store
	waiters *waiters
	keys    keyring
	entra   *entra // nil when no source names an Entra application
	metrics *metrics
	reg     *prometheus.Registry
	log     zerolog.Logger
	handler http.Handler
	// budgetPause is when (unix ns) to read the source budgets again after
	// a read failed; see budgetBackoff.
	budgetPause atomic.Int64
}

// New checks cfg and returns a gateway ready to serve. It makes no
// network call: Entra ID's discovery document is read on the first
// access token, and the bucket and stream on the first request that needs
// them, so a gateway may start before NATS or Entra ID answer.
func New(cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.defaults()
	names := wire.Names{Prefix: cfg.Prefix}
	st, err := newStore(cfg.NATS, names, cfg.Timeout)
	if err != nil {
		return nil, err
	}
	reg := cfg.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	s := &Server{
		cfg:     cfg,
		names:   names,
		policy:  cfg.policy(),
		nc:      cfg.NATS,
		store:   st,
		waiters: newWaiters(cfg.NATS, names),
		keys:    newKeyring(cfg.Sources),
		metrics: newMetrics(reg),
		reg:     reg,
		log:     *cfg.Log,
	}
	if usesEntra(cfg.Sources) {
		s.entra = newEntra(cfg)
	}
	s.handler = s.withConsole(s.mux())
	return s, nil
}

// ServeHTTP serves every route of the gateway.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.handler.ServeHTTP(w, r) }

// route is one entry of the route table, the one place that says what the
// gateway serves: the mux is built from it, and a test checks every entry
// against the OpenAPI document.
type route struct {
	method string
	path   string // a ServeMux path pattern
	// authenticated routes name the caller's source before the handler.
	authenticated bool
	handle        func(*Server, http.ResponseWriter, *http.Request)
}

// routes is the route table.
var routes = []route{
	{http.MethodPost, "/v1/jobs", true, (*Server).submit},
	{http.MethodGet, "/v1/jobs", true, (*Server).listJobs},
	{http.MethodGet, "/v1/jobs/{id}", true, (*Server).getJob},
	{http.MethodGet, "/v1/batches/{name}", true, (*Server).getBatch},
	{http.MethodGet, "/v1/openapi.json", false, (*Server).openAPI},
	{http.MethodGet, "/healthz", false, (*Server).healthz},
	{http.MethodGet, "/readyz", false, (*Server).readyz},
	{http.MethodGet, "/metrics", false, (*Server).serveMetrics},
}

// mux builds the handler from the route table; a path served with another
// method answers 405 with Allow, any other path 404, both as problems.
func (s *Server) mux() http.Handler {
	mux := http.NewServeMux()
	allow := map[string][]string{}
	for _, rt := range routes {
		h := http.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { rt.handle(s, w, r) }))
		if rt.authenticated {
			h = s.authenticated(h)
		}
		mux.Handle(rt.method+" "+rt.path, s.observed(rt.path, h))
		allow[rt.path] = append(allow[rt.path], rt.method)
	}
	for path, methods := range allow {
		if slices.Contains(methods, http.MethodGet) {
			methods = append(methods, http.MethodHead)
		}
		list := strings.Join(methods, ", ")
		mux.Handle(path, s.observed(path, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Allow", list)
			writeProblem(w, r, newProblem(ProblemMethodNotAllowed, http.StatusMethodNotAllowed, "%s is not served on %s: use %s", r.Method, path, list).p)
		})))
	}
	mux.Handle("/", s.observed("other", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeProblem(w, r, notFound("no such route: the API is described at /v1/openapi.json").p)
	})))
	if s.cfg.Pprof {
		// Outside the route table: not part of the API, and off by default.
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	return mux
}

// authenticated names the caller's source, or answers 401 or 403.
func (s *Server) authenticated(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		source, method, perr := s.authenticate(r)
		if perr != nil {
			s.metrics.authFailed.WithLabelValues(strconv.Itoa(perr.p.Status)).Inc()
			writeProblem(w, r, perr.p)
			return
		}
		ri := infoOf(r.Context())
		ri.source, ri.auth = source, method
		h.ServeHTTP(w, r)
	})
}

func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprintln(w, "ok")
}

// readyz answers 200 when NATS is connected, the bucket and stream the
// gateway needs exist and Config.Ready has nothing to say, else 503 listing
// what is missing. Entra ID's last discovery failure is listed as a
// warning: API keys work without it.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.Timeout)
	defer cancel()
	problems := s.store.ready(ctx)
	if s.cfg.Ready != nil {
		if err := s.cfg.Ready(); err != nil {
			problems = append(problems, err.Error())
		}
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	var warnings []string
	if s.entra != nil {
		if err := s.entra.problem(); err != nil {
			warnings = append(warnings, "warning: access tokens cannot be verified: "+err.Error())
		}
	}
	if len(problems) > 0 {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintln(w, "not ready:\n"+strings.Join(append(problems, warnings...), "\n"))
		return
	}
	fmt.Fprintln(w, strings.Join(append([]string{"ready"}, warnings...), "\n"))
}

func (s *Server) serveMetrics(w http.ResponseWriter, r *http.Request) {
	promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{}).ServeHTTP(w, r)
}

// HTTPServer returns an http.Server for the gateway on addr, with every
// timeout set: headers must arrive within 5s and a body within 30s (a job
// is at most 16 KiB); an answer may take MaxWait plus 30s (a Prefer: wait
// of 60s); idle keep-alive connections close after 120s; headers are at
// most 32 KiB (an access token is a few).
func (s *Server) HTTPServer(addr string) *http.Server {
	return &http.Server{
		Addr:              addr,
		Handler:           s,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      MaxWait + 30*time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    32 << 10,
		ErrorLog:          stdlog.New(s.log.With().Str("component", "http").Logger(), "", 0),
	}
}

// Serve serves the gateway on ln until ctx ends, then stops taking
// requests and lets those in flight finish until hard ends (a second
// signal, or a drain deadline), when their connections are closed. A
// caller cut off that way may retry: with its Idempotency-Key nothing is
// doubled.
func (s *Server) Serve(ctx, hard context.Context, ln net.Listener) error {
	srv := s.HTTPServer(ln.Addr().String())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	s.log.Info().Str("addr", ln.Addr().String()).Msg("gateway serving")
	select {
	case err := <-done:
		return fmt.Errorf("gateway: serve: %w", err)
	case <-ctx.Done():
	}
	err := srv.Shutdown(hard)
	if hard.Err() != nil && errors.Is(err, hard.Err()) {
		_ = srv.Close()
		<-done
		return errors.New("gateway: requests still in flight were cut off")
	}
	<-done
	return err
}
