package gateway

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/recoverpasscode/recoverpasscode/devserver/devservertest"
	"github.com/recoverpasscode/recoverpasscode/internal/testsystem"
)

// TestConsoleGetsWhatTheAPIDoesNotRoute: with a console, every path the
// API does not route goes to it, but under /v1/, where the API answers
// its own 404 and 405 problems.
func TestConsoleGetsWhatTheAPIDoesNotRoute(t *testing.T) {
	ns := devservertest.Start(t)
	nc, err := nats.Connect(ns.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	_, hash, _ := NewAPIKey()
	console := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("the console")) })
	gw, err := New(Config{NATS: nc, TenantID: testsystem.Tenant, Sources: []Source{{Name: "ticketing", APIKeys: []string{hash}}}, Console: console})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		method, path string
		status       int
		body         string
	}{
		{"GET", "/", 200, "the console"},
		{"GET", "/jobs?ticket=INC1", 200, "the console"},
		{"POST", "/dlq/replay", 200, "the console"},
		{"GET", "/healthz", 200, "ok"},
		{"GET", "/v1/nope", 404, "no such route"},
		{"DELETE", "/v1/jobs", 405, "not served"},
		{"GET", "/v1/jobs", 401, ""},
	} {
		w := httptest.NewRecorder()
		gw.ServeHTTP(w, httptest.NewRequest(tc.method, tc.path, nil))
		if w.Code != tc.status || !strings.Contains(w.Body.String(), tc.body) {
			t.Errorf("%s %s: %d %q, want %d with %q", tc.method, tc.path, w.Code, w.Body.String(), tc.status, tc.body)
		}
	}
}
