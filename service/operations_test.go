package service_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/recoverpasscode/recoverpasscode/graph/graphsim"
	"github.com/recoverpasscode/recoverpasscode/history"
	"github.com/recoverpasscode/recoverpasscode/internal/testsystem"
	"github.com/recoverpasscode/recoverpasscode/wire"
)

// tokenRecorder passes requests through and remembers every bearer token
// the worker sent, so the test can look for them in the logs.
type tokenRecorder struct {
	next   http.RoundTripper
	mu     sync.Mutex
	tokens map[string]bool
}

func (r *tokenRecorder) RoundTrip(req *http.Request) (*http.Response, error) {
	if tok, ok := strings.CutPrefix(req.Header.Get("Authorization"), "Bearer "); ok {
		r.mu.Lock()
		r.tokens[tok] = true
		r.mu.Unlock()
	}
	return r.next.RoundTrip(req)
}

func TestMetricsAuditTraceAndNoSecretsInLogs(t *testing.T) {
	t.Parallel()
	sys := testsystem.Start(t, graphsim.Config{})
	missing := testsystem.DeviceN(404)
	sys.GS.SetDeviceMissing(missing)
	cfg := sys.Config("ops")
	cfg.HTTPAddr = testsystem.FreeAddr(t)
	rec := &tokenRecorder{next: cfg.HTTPClient.Transport, tokens: map[string]bool{}}
	cfg.HTTPClient = &http.Client{Transport: rec}
	logs := sys.StartWorker(cfg)

	const trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	m := nats.NewMsg(sys.Names.Jobs("ticketing"))
	m.Data = []byte(`{"id":"traced","managedDeviceId":"` + testsystem.Device + `","requestedBy":"agent@contoso.com","ticket":"INC42"}`)
	m.Header.Set(jetstream.MsgIDHeader, "traced")
	m.Header.Set("traceparent", trace)
	if _, err := sys.JS.PublishMsg(t.Context(), m); err != nil {
		t.Fatal(err)
	}
	sys.Submit("ticketing", wire.Job{ID: "missing", ManagedDeviceID: missing})
	sys.Publish("ticketing", "invalid", []byte(`{"managedDeviceId":"nope"}`))
	results := sys.Results("", 3, 20*time.Second)
	if r := results["traced"]; r.Traceparent != trace || r.Status != wire.Succeeded {
		t.Errorf("traced result: %+v", r)
	}

	// The audit trail: one event per Graph call and per decision.
	events := auditEvents(t, sys, 5)
	kinds := map[string]int{}
	for _, e := range events {
		kinds[e.Kind+"/"+e.JobID]++
		if e.JobID == "traced" && e.Traceparent != trace {
			t.Errorf("audit event %s of the traced job lacks its traceparent", e.Kind)
		}
		if e.JobID == "traced" && (e.RequestedBy != "agent@contoso.com" || e.Ticket != "INC42" || e.Worker != "ops") {
			t.Errorf("audit event lacks who asked: %+v", e)
		}
		if e.Kind == wire.KindGraphCall && (e.Graph == nil || e.Graph.RequestID == "" || e.Graph.ClientRequestID == "" || e.Form == "") {
			t.Errorf("graph call event lacks ids: %+v", e)
		}
	}
	for _, k := range []string{"graph_call/traced", "graph_call/missing", "decision/traced", "decision/missing", "decision/invalid"} {
		if kinds[k] != 1 {
			t.Errorf("audit events %v: want one %s", kinds, k)
		}
	}
	// The same trail by device, as the console's device page reads it:
	// the worker's subjects carry the tenant and the device.
	for device, want := range map[string]string{testsystem.Device: "decision/traced graph_call/traced", missing: "decision/missing graph_call/missing"} {
		got, err := history.New(sys.JS, sys.Names).Device(t.Context(), testsystem.Tenant, device, 10)
		if err != nil {
			t.Fatalf("history of %s: %v", device, err)
		}
		var ids []string
		for _, e := range got {
			ids = append(ids, e.Kind+"/"+e.JobID)
		}
		if strings.Join(ids, " ") != want {
			t.Errorf("history of %s: %v, want %s", device, ids, want)
		}
	}
	if !strings.Contains(logs.String(), trace) {
		t.Error("the traceparent is not in the logs")
	}

	body := scrape(t, cfg.HTTPAddr)
	for _, want := range []string{
		`recoverpasscode_jobs_total{source="ticketing",status="succeeded"} 1`,
		`recoverpasscode_jobs_total{source="ticketing",status="failed"} 1`,
		`recoverpasscode_jobs_total{source="ticketing",status="rejected"} 1`,
		`recoverpasscode_dlq_total{source="ticketing"} 2`,
		`recoverpasscode_graph_calls_total{code="204"} 1`,
		`recoverpasscode_graph_calls_total{code="404"} 1`,
		`recoverpasscode_graph_latency_seconds_count 2`,
		`recoverpasscode_ratelimit_wait_seconds_count 2`,
		`recoverpasscode_jobs_in_flight 0`,
		`recoverpasscode_ready 1`,
		`recoverpasscode_consumer_pending 0`,
		`recoverpasscode_consumer_redelivered 0`,
		`recoverpasscode_token_errors_total 0`,
		`recoverpasscode_audit_lost_total 0`,
	} {
		if !strings.Contains(body, want+"\n") {
			t.Errorf("/metrics lacks %q", want)
		}
	}

	// Nothing secret in the logs: not the client secret, not any token sent.
	out := logs.String()
	if strings.Contains(out, testsystem.Secret) {
		t.Error("the client secret is in the logs")
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.tokens) == 0 {
		t.Fatal("no token was recorded")
	}
	for tok := range rec.tokens {
		if strings.Contains(out, tok) {
			t.Error("an access token is in the logs")
		}
	}
}

func auditEvents(t *testing.T, sys *testsystem.System, n int) []wire.AuditEvent {
	t.Helper()
	cons, err := sys.JS.OrderedConsumer(t.Context(), sys.Names.AuditStream(), jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	var out []wire.AuditEvent
	deadline := time.Now().Add(10 * time.Second)
	for len(out) < n {
		msg, err := cons.Next(jetstream.FetchMaxWait(time.Until(deadline)))
		if err != nil {
			t.Fatalf("%d of %d audit events: %v", len(out), n, err)
		}
		var e wire.AuditEvent
		if err := json.Unmarshal(msg.Data(), &e); err != nil {
			t.Fatal(err)
		}
		out = append(out, e)
	}
	return out
}

func scrape(t *testing.T, addr string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
