package gateway

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/recoverpasscode/recoverpasscode/devserver"
	"github.com/recoverpasscode/recoverpasscode/internal/testsystem"
)

// TestNATSOutage stops the only NATS server: submissions are 503 with
// nothing accepted, /readyz says why; once it is back on the same port and
// data, the same request succeeds and nothing is doubled.
func TestNATSOutage(t *testing.T) {
	h := newSystem(t, true)
	dir := t.TempDir()
	ns, err := devserver.Start(devserver.Config{StoreDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Shutdown() })
	u, _ := url.Parse(ns.URL())
	port, _ := strconv.Atoi(u.Port())

	cfg := h.sys.Config("w1")
	cfg.NATS.URL = ns.URL()
	testsystem.RunWorker(t, cfg, 15*time.Second)
	h.start(ns.URL(), h.sources)
	addr := h.url[len("http://"):]
	testsystem.WaitReadyz(t, addr, http.StatusOK, 20*time.Second)
	if r := h.post("ticketing", jobBody(device(70)), "Prefer", "wait=20"); r.status != http.StatusOK {
		t.Fatalf("before the outage: %d %s", r.status, r.body)
	}

	ns.Shutdown()
	_, body := testsystem.WaitReadyz(t, addr, http.StatusServiceUnavailable, 10*time.Second)
	t.Logf("/readyz during the outage: %s", body)
	body71 := jobBody(device(71), "ticket", "INC71")
	for _, headers := range [][]string{{"Idempotency-Key", "INC71", "Prefer", "wait=5"}, {}} {
		r := h.post("ticketing", body71, headers...)
		p := r.problem(t, http.StatusServiceUnavailable, ProblemUnavailable)
		if r.header.Get("Retry-After") == "" || !containsAll(p["detail"].(string), "nothing was accepted", "Idempotency-Key") {
			t.Fatalf("503 %v, Retry-After %q", p, r.header.Get("Retry-After"))
		}
	}
	h.get("ticketing", "/v1/jobs/x").problem(t, http.StatusServiceUnavailable, ProblemUnavailable)

	ns, err = devserver.Start(devserver.Config{Port: port, StoreDir: dir})
	if err != nil {
		t.Fatalf("restart NATS on port %d: %v", port, err)
	}
	testsystem.WaitReadyz(t, addr, http.StatusOK, 20*time.Second)
	r := h.post("ticketing", body71, "Idempotency-Key", "INC71", "Prefer", "wait=30")
	if r.status != http.StatusOK || r.json(t)["status"] != "succeeded" {
		t.Fatalf("the retry after the outage: %d %s", r.status, r.body)
	}
	if n := h.performed(device(71)); n != 1 {
		t.Errorf("Graph performed the action %d times, want 1", n)
	}
	nc, err := nats.Connect(ns.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	stream, err := js.Stream(ctx, h.sys.Names.JobsStream())
	if err != nil {
		t.Fatal(err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.LastSeq != 2 {
		t.Errorf("the jobs stream stored %d jobs, want 2 (one before the outage, one after)", info.State.LastSeq)
	}
}

func containsAll(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}
