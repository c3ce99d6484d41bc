// Package receiver is a webhook endpoint that accepts write-back
// deliveries only when their Standard Webhooks signature verifies: what a
// ticketing integration runs, in a few lines, and what tests and
// `worker --dev` run to see deliveries arrive.
package receiver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/recoverpasscode/recoverpasscode/wire"
	"github.com/recoverpasscode/recoverpasscode/writeback"
)

// Config describes a Receiver.
type Config struct {
	// Secrets are the whsec_ secrets a delivery may be signed with; one
	// matching signature suffices. Required.
	Secrets []string
	// Tolerance is how far webhook-timestamp may be from now. Defaults to
	// 5 minutes.
	Tolerance time.Duration
	// Logger, when set, receives one line per verified delivery (the job,
	// its status and ticket) and per refused one.
	Logger *zerolog.Logger
}

// Delivery is a verified delivery.
type Delivery struct {
	// ID is its webhook-id, <jobId>/result.
	ID string
	// Timestamp is its webhook-timestamp.
	Timestamp time.Time
	// Body is the request body, the result as stored.
	Body []byte
	// Result is Body decoded, for a result (ID <jobId>/result).
	Result wire.Result
	// Confirmation is Body decoded, for the confirmation of a followed job
	// (ID <jobId>/confirmation); nil for a result.
	Confirmation *wire.Confirmation
	// Received is when it arrived.
	Received time.Time
}

// Receiver is an http.Handler that verifies and records deliveries: 204 for
// a verified one, 401 for one whose signature or timestamp fails, 400 for a
// body that is not a result. It is safe for concurrent use.
type Receiver struct {
	cfg     Config
	secrets []writeback.Secret

	mu        sync.Mutex
	delivered []Delivery
	refused   int
	changed   chan struct{}
}

// New checks cfg and returns a Receiver.
func New(cfg Config) (*Receiver, error) {
	if len(cfg.Secrets) == 0 {
		return nil, errors.New("receiver: a secret is required")
	}
	if cfg.Tolerance <= 0 {
		cfg.Tolerance = 5 * time.Minute
	}
	r := &Receiver{cfg: cfg, changed: make(chan struct{})}
	for i, s := range cfg.Secrets {
		sec, err := writeback.ParseSecret(s)
		if err != nil {
			return nil, fmt.Errorf("receiver: secret %d: %w", i+1, err)
		}
		r.secrets = append(r.secrets, sec)
	}
	return r, nil
}

// ServeHTTP verifies and records one delivery.
func (r *Receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodPost {
		http.Error(w, "POST deliveries here", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, req.Body, 1<<20))
	if err != nil {
		http.Error(w, "cannot read the body", http.StatusBadRequest)
		return
	}
	if err := writeback.Verify(req.Header, body, time.Now(), r.cfg.Tolerance, r.secrets...); err != nil {
		r.refuse(err)
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return
	}
	var res wire.Result
	var conf *wire.Confirmation
	id := req.Header.Get(writeback.HeaderID)
	if strings.HasSuffix(id, "/confirmation") {
		conf = &wire.Confirmation{}
		if err := json.Unmarshal(body, conf); err != nil || conf.JobID+"/confirmation" != id {
			r.refuse(errors.New("the body is not the confirmation webhook-id names"))
			http.Error(w, "the body is not the confirmation webhook-id names", http.StatusBadRequest)
			return
		}
		res = wire.Result{JobID: conf.JobID, Source: conf.Source, Ticket: conf.Ticket, ManagedDeviceID: conf.ManagedDeviceID}
	} else if err := json.Unmarshal(body, &res); err != nil || res.JobID+"/result" != id {
		r.refuse(errors.New("the body is not the result webhook-id names"))
		http.Error(w, "the body is not the result webhook-id names", http.StatusBadRequest)
		return
	}
	ts, _ := strconv.ParseInt(req.Header.Get(writeback.HeaderTimestamp), 10, 64) // Verify parsed it
	d := Delivery{ID: id, Timestamp: time.Unix(ts, 0), Body: body, Result: res, Confirmation: conf, Received: time.Now()}
	r.mu.Lock()
	r.delivered = append(r.delivered, d)
	r.notifyLocked()
	r.mu.Unlock()
	if l := r.cfg.Logger; l != nil {
		l.Info().Str("webhook_id", d.ID).Str("job_id", res.JobID).Str("status", string(res.Status)).
			Str("ticket", res.Ticket).Str("device_id", res.ManagedDeviceID).Msg("webhook delivery verified")
	}
	w.WriteHeader(http.StatusNoContent)
}

func (r *Receiver) refuse(err error) {
	r.mu.Lock()
	r.refused++
	r.notifyLocked()
	r.mu.Unlock()
	if l := r.cfg.Logger; l != nil {
		l.Warn().Err(err).Msg("webhook delivery refused")
	}
}

func (r *Receiver) notifyLocked() {
	close(r.changed)
	r.changed = make(chan struct{})
}

// Deliveries returns the verified deliveries, in the order they arrived
// (a result delivered twice appears twice).
func (r *Receiver) Deliveries() []Delivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Delivery(nil), r.delivered...)
}

// Refused is the number of deliveries refused.
func (r *Receiver) Refused() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.refused
}

// Wait blocks until done reports true of the verified deliveries and the
// number refused, checking after each request, or until ctx ends.
func (r *Receiver) Wait(ctx context.Context, done func(delivered []Delivery, refused int) bool) error {
	for {
		r.mu.Lock()
		ok := done(r.delivered, r.refused)
		ch := r.changed
		r.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ch:
		}
	}
}

// Server is a Receiver listening on its own loopback address, over plain
// HTTP (which write-back allows to loopback only).
type Server struct {
	*Receiver
	srv *http.Server
	url string
}

// Start serves a Receiver for cfg on addr, a loopback host:port
// ("127.0.0.1:0" picks a port): what `worker --dev` runs so that a newcomer
// sees a delivery arrive. Its URL goes into a webhook's configuration with
// one of cfg's secrets.
func Start(cfg Config, addr string) (*Server, error) {
	r, err := New(cfg)
	if err != nil {
		return nil, err
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("receiver: address %q: %w", addr, err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return nil, fmt.Errorf("receiver: address %q: a loopback address only (deliveries come over plain HTTP)", addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("receiver: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/webhook", r)
	s := &Server{Receiver: r, srv: &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}, url: "http://" + ln.Addr().String() + "/webhook"}
	go func() { _ = s.srv.Serve(ln) }()
	return s, nil
}

// URL is where deliveries go.
func (s *Server) URL() string { return s.url }

// Close stops the server.
func (s *Server) Close() error { return s.srv.Close() }
