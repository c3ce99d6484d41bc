package worker

import (
	"fmt"
	"net/http"
	"strings"
	"sync"

	"github.com/nats-io/nats.go"
)

// Health tracks what readiness depends on: a NATS connection and a usable
// token. It is safe for concurrent use.
type Health struct {
	nc *nats.Conn

	mu          sync.Mutex
	credentials error // nil when a token could be had
	started     bool  // setup done
}

// NewHealth watches nc. Until MarkStarted and a successful credential
// check, the worker is not ready.
func NewHealth(nc *nats.Conn) *Health {
	return &Health{nc: nc, credentials: fmt.Errorf("no token acquired yet")}
}

// SetCredentials records the last token check: nil means a token could be
// had.
func (h *Health) SetCredentials(err error) {
	h.mu.Lock()
	h.credentials = err
	h.mu.Unlock()
}

// MarkStarted records that streams and consumer are set up.
func (h *Health) MarkStarted() {
	h.mu.Lock()
	h.started = true
	h.mu.Unlock()
}

// Problems lists why the worker is not ready; empty means ready.
func (h *Health) Problems() []string {
	var out []string
	if h.nc == nil || !h.nc.IsConnected() {
		out = append(out, "nats: not connected")
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.started {
		out = append(out, "jetstream: streams and consumer not set up yet")
	}
	if h.credentials != nil {
		out = append(out, "credentials: "+h.credentials.Error())
	}
	return out
}

// Handler serves /healthz (the process is alive) and /readyz (it can take
// work: 200, or 503 listing what is missing).
func (h *Health) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if p := h.Problems(); len(p) > 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, "not ready:\n"+strings.Join(p, "\n"))
			return
		}
		fmt.Fprintln(w, "ready")
	})
	return mux
}
