package ratelimit_test

import (
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/recoverpasscode/recoverpasscode/ratelimit"
)

// tracer records what WithTrace reports.
type tracer struct {
	mu     sync.Mutex
	events []string
}

func (r *tracer) Wrote(ratelimit.Permit, time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, "wrote")
}

func (r *tracer) Answered(ratelimit.Permit, time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, "answered")
}

// TestWithTrace: a call made with the context reports its write, then its
// answer, once each.
func TestWithTrace(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	defer srv.Close()
	var tr tracer
	req, err := http.NewRequestWithContext(ratelimit.WithTrace(t.Context(), &tr, ratelimit.Permit{}), http.MethodPost, srv.URL, http.NoBody)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if len(tr.events) != 2 || tr.events[0] != "wrote" || tr.events[1] != "answered" {
		t.Fatalf("reported %v, want [wrote answered]", tr.events)
	}
}
