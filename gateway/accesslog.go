package gateway

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"strings"
	"time"

	"github.com/rs/zerolog"
)

// requestInfo is what the access log line of one request says. Handlers
// fill in the caller's source and the job; nothing a caller sent as a
// credential is ever put here.
type requestInfo struct {
	id     string
	route  string
	source string
	auth   string
	jobID  string
}

type infoKey struct{}

func infoOf(ctx context.Context) *requestInfo {
	if ri, ok := ctx.Value(infoKey{}).(*requestInfo); ok {
		return ri
	}
	return &requestInfo{}
}

func requestIDOf(ctx context.Context) string { return infoOf(ctx).id }

// validRequestID reports whether a caller's X-Request-Id can be kept: 1 to
// 128 letters, digits and - _ . : (a UUID, a ServiceNow sys_id, a trace
// id), nothing that could forge a log line or a header.
func validRequestID(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == ':') {
			return false
		}
	}
	return true
}

func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return hex.EncodeToString(b[:])
}

// statusWriter records the status and size of an answer.
type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += n
	return n, err
}

// Unwrap lets http.ResponseController reach the connection.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// observed wraps the handler of route with the request id (the caller's
// valid X-Request-Id, else a new one, echoed in the answer), one access
// log line and the request metrics.
func (s *Server) observed(route string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		ri := &requestInfo{id: r.Header.Get("X-Request-Id"), route: route}
		if !validRequestID(ri.id) {
			ri.id = newRequestID()
		}
		w.Header().Set("X-Request-Id", ri.id)
		sw := &statusWriter{ResponseWriter: w}
		h.ServeHTTP(sw, r.WithContext(context.WithValue(r.Context(), infoKey{}, ri)))
		if sw.status == 0 {
			sw.status = http.StatusOK
		}
		d := time.Since(start)
		s.metrics.observe(route, r.Method, sw.status, d)
		s.accessLog(r, ri, sw, d)
	})
}

// accessLog writes the request's line: health and metrics scrapes at
// debug, the API at info. The query is left out (it holds no credential,
// but ticket numbers are the callers' business), the path is in.
func (s *Server) accessLog(r *http.Request, ri *requestInfo, sw *statusWriter, d time.Duration) {
	level := zerolog.InfoLevel
	if ri.route == "/healthz" || ri.route == "/readyz" || ri.route == "/metrics" || (ri.route == "console" && strings.HasPrefix(r.URL.Path, "/live/")) {
		level = zerolog.DebugLevel
	}
	ev := s.log.WithLevel(level).
		Str("request_id", ri.id).
		Str("method", r.Method).
		Str("route", ri.route).
		Str("path", r.URL.Path).
		Int("status", sw.status).
		Int("bytes", sw.bytes).
		Float64("duration_ms", float64(d.Microseconds())/1000).
		Str("remote", r.RemoteAddr)
	if ri.source != "" {
		ev = ev.Str("source", ri.source).Str("auth", ri.auth)
	}
	if ri.jobID != "" {
		ev = ev.Str("job_id", ri.jobID)
	}
	ev.Msg("request")
}
