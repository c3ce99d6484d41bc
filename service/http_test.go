package service

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/recoverpasscode/recoverpasscode/metrics"
	"github.com/recoverpasscode/recoverpasscode/worker"
)

// The profiler exposes the process's memory: it is served only when asked.
func TestProfilerOnlyWhenAsked(t *testing.T) {
	for _, profile := range []bool{false, true} {
		reg := prometheus.NewRegistry()
		srv := httptest.NewServer(httpHandler(worker.NewHealth(nil), reg, metrics.New(reg), profile))
		resp, err := http.Get(srv.URL + "/debug/pprof/goroutine?debug=1")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		srv.Close()
		want := http.StatusNotFound
		if profile {
			want = http.StatusOK
		}
		if resp.StatusCode != want {
			t.Errorf("pprof %v: /debug/pprof/goroutine answered %d, want %d", profile, resp.StatusCode, want)
		}
	}
}
