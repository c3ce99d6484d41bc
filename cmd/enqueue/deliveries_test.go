package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/recoverpasscode/recoverpasscode/graph/graphsim"
	"github.com/recoverpasscode/recoverpasscode/internal/testsystem"
	"github.com/recoverpasscode/recoverpasscode/wire"
	"github.com/recoverpasscode/recoverpasscode/writeback"
	"github.com/recoverpasscode/recoverpasscode/writeback/receiver"
	"github.com/recoverpasscode/recoverpasscode/writeback/servicenowsim"
)

// TestDeliveriesListAndRedeliver: a webhook whose receiver holds another
// secret and a ticket no ServiceNow record has end as two failed
// deliveries; `deliveries list` shows each with its outcome, status and
// reason, `deliveries redeliver` after the causes are fixed delivers
// both, and the list is then empty.
func TestDeliveriesListAndRedeliver(t *testing.T) {
	t.Parallel()
	sys := testsystem.Start(t, graphsim.Config{})
	sent, _ := writeback.NewSecret()
	held, _ := writeback.NewSecret()
	hook := &swappable{}
	hook.set(mustReceiver(t, held))
	hookSrv := httptest.NewTLSServer(hook)
	t.Cleanup(hookSrv.Close)
	snow := servicenowsim.New(servicenowsim.Config{User: "svc", Password: "snow-password-0123"})
	t.Cleanup(snow.Close)

	d, err := writeback.New(sys.JS, writeback.Config{
		Sources: []writeback.Source{{Name: "ticketing",
			Webhooks:   []writeback.Webhook{{Name: "hook", URL: hookSrv.URL, Secret: sent}},
			ServiceNow: &writeback.ServiceNow{Instance: snow.URL(), User: "svc", Password: "snow-password-0123"},
		}},
		Timeout: 2 * time.Second, ClientErrorAttempts: 2, MinBackoff: 50 * time.Millisecond, MaxBackoff: time.Second,
		FetchWait: 200 * time.Millisecond, TLS: trust(hookSrv, snow), Logger: zerolog.Nop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	<-d.Started()

	publishResult(t, sys, "job-del-1", "INC0000404")
	store, err := writeback.OpenStore(t.Context(), sys.JS, sys.Names)
	if err != nil {
		t.Fatal(err)
	}
	if !testsystem.Eventually(30*time.Second, func() bool {
		f, err := store.Failures(t.Context(), writeback.Filter{})
		return err == nil && len(f) == 2
	}) {
		t.Fatal("no two failed deliveries within 30s")
	}

	list := enqueue(t.Context(), t, sys, "deliveries", "list")
	if list.code != exitOK || !strings.Contains(list.stdout, "2 failed deliveries") {
		t.Fatalf("deliveries list: %s", list)
	}
	for _, want := range []string{
		"ticketing  hook        job-del-1  INC0000404  rejected   401     2",
		"ticketing  servicenow  job-del-1  INC0000404  not-found  200     1         no incident record is numbered INC0000404",
		"no webhook-signature matches",
	} {
		if !strings.Contains(list.stdout, want) {
			t.Errorf("deliveries list lacks %q:\n%s", want, list.stdout)
		}
	}
	if strings.Contains(list.stdout+list.stderr, sent) || strings.Contains(list.stdout, "snow-password-0123") {
		t.Errorf("deliveries list shows a secret:\n%s", list.stdout)
	}
	asJSON := enqueue(t.Context(), t, sys, "deliveries", "list", "--endpoint", "servicenow", "--json")
	var f writeback.Failure
	if asJSON.code != exitOK || strings.Count(asJSON.stdout, "\n") != 1 || json.Unmarshal([]byte(asJSON.stdout), &f) != nil ||
		f.Outcome != writeback.OutcomeNotFound || f.WebhookID != "job-del-1/result" {
		t.Errorf("deliveries list --json: %s", asJSON)
	}
	if inv := enqueue(t.Context(), t, sys, "deliveries", "redeliver"); inv.code != exitFailed || !strings.Contains(inv.stderr, "choose what to redeliver") {
		t.Errorf("redeliver without a selection: %s", inv)
	}
	dry := enqueue(t.Context(), t, sys, "deliveries", "redeliver", "--all", "--dry-run")
	if dry.code != exitOK || strings.Count(dry.stdout, "would redeliver job job-del-1") != 2 {
		t.Errorf("redeliver --dry-run: %s", dry)
	}

	fixed := mustReceiver(t, held, sent)
	hook.set(fixed)
	snow.AddRecord("incident", "INC0000404")
	again := enqueue(t.Context(), t, sys, "deliveries", "redeliver", "--source", "ticketing")
	if again.code != exitOK || !strings.Contains(again.stdout, "redelivering job job-del-1 to ticketing/hook (rejected)") ||
		!strings.Contains(again.stdout, "redelivering job job-del-1 to ticketing/servicenow (not-found)") {
		t.Fatalf("redeliver: %s", again)
	}
	wait, stop := context.WithTimeout(t.Context(), 30*time.Second)
	defer stop()
	if err := fixed.Wait(wait, func(d []receiver.Delivery, _ int) bool { return len(d) == 1 }); err != nil {
		t.Fatalf("the webhook redelivery: %v", err)
	}
	if err := snow.WaitNotes(wait, func(n []servicenowsim.Note) bool { return len(n) == 1 }); err != nil {
		t.Fatalf("the work note redelivery: %v", err)
	}
	if !testsystem.Eventually(30*time.Second, func() bool {
		inv := enqueue(t.Context(), t, sys, "deliveries", "list")
		return inv.code == exitOK && strings.Contains(inv.stdout, "no failed deliveries match")
	}) {
		t.Errorf("the list is not empty after the redeliveries:\n%s", enqueue(t.Context(), t, sys, "deliveries", "list").stdout)
	}
}

func publishResult(t *testing.T, sys *testsystem.System, jobID, ticket string) {
	t.Helper()
	r := wire.Result{JobID: jobID, IdempotencyKey: jobID, Source: "ticketing", ManagedDeviceID: testsystem.Device, Ticket: ticket, Status: wire.Succeeded, Attempts: 1}
	body, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sys.JS.Publish(t.Context(), sys.Names.Result("ticketing", jobID), body, jetstream.WithMsgID(jobID+"/result")); err != nil {
		t.Fatal(err)
	}
}

func mustReceiver(t *testing.T, secrets ...string) *receiver.Receiver {
	t.Helper()
	r, err := receiver.New(receiver.Config{Secrets: secrets})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// swappable is a handler a test replaces while it serves.
type swappable struct {
	mu sync.Mutex
	h  *receiver.Receiver
}

func (s *swappable) set(h *receiver.Receiver) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.h = h
}

func (s *swappable) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	h := s.h
	s.mu.Unlock()
	h.ServeHTTP(w, r)
}

// trust is a TLS configuration trusting the receiver's and the double's
// certificates.
func trust(hook *httptest.Server, snow *servicenowsim.Server) *tls.Config {
	pool := x509.NewCertPool()
	pool.AddCert(hook.Certificate())
	if snow != nil {
		pool.AddCert(snow.Certificate())
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
}

// TestDeliveriesOfConfirmations: a followed job's confirmation that a
// webhook does not take is kept next to its result's failure, listed as
// JOB/confirmation, and redelivered by the job's id with the result.
func TestDeliveriesOfConfirmations(t *testing.T) {
	t.Parallel()
	sys := testsystem.Start(t, graphsim.Config{})
	sent, _ := writeback.NewSecret()
	held, _ := writeback.NewSecret()
	hook := &swappable{}
	hook.set(mustReceiver(t, held))
	hookSrv := httptest.NewTLSServer(hook)
	t.Cleanup(hookSrv.Close)
	d, err := writeback.New(sys.JS, writeback.Config{
		Sources: []writeback.Source{{Name: "ticketing", Webhooks: []writeback.Webhook{{Name: "hook", URL: hookSrv.URL, Secret: sent}}}},
		Timeout: 2 * time.Second, ClientErrorAttempts: 2, MinBackoff: 50 * time.Millisecond, MaxBackoff: time.Second,
		FetchWait: 200 * time.Millisecond, TLS: trust(hookSrv, nil), Logger: zerolog.Nop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	<-d.Started()

	publishResult(t, sys, "job-conf-1", "INC0000042")
	c := wire.Confirmation{JobID: "job-conf-1", Source: "ticketing", ManagedDeviceID: testsystem.Device, Ticket: "INC0000042", State: wire.StateDone}
	body, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sys.JS.Publish(t.Context(), sys.Names.Confirmation("ticketing", c.JobID), body, jetstream.WithMsgID(c.JobID+"/confirmation")); err != nil {
		t.Fatal(err)
	}
	store, err := writeback.OpenStore(t.Context(), sys.JS, sys.Names)
	if err != nil {
		t.Fatal(err)
	}
	if !testsystem.Eventually(30*time.Second, func() bool {
		f, err := store.Failures(t.Context(), writeback.Filter{})
		return err == nil && len(f) == 2
	}) {
		t.Fatal("no two failed deliveries within 30s")
	}
	list := enqueue(t.Context(), t, sys, "deliveries", "list", "--id", "job-conf-1")
	if list.code != exitOK || !strings.Contains(list.stdout, "2 failed deliveries") ||
		!strings.Contains(list.stdout, "ticketing  hook      job-conf-1/confirmation  INC0000042  rejected  401") ||
		!strings.Contains(list.stdout, "ticketing  hook      job-conf-1               INC0000042  rejected  401") {
		t.Fatalf("deliveries list: %s", list)
	}
	fixed := mustReceiver(t, held, sent)
	hook.set(fixed)
	again := enqueue(t.Context(), t, sys, "deliveries", "redeliver", "--id", "job-conf-1")
	if again.code != exitOK || !strings.Contains(again.stdout, "redelivering job job-conf-1/confirmation to ticketing/hook (rejected)") {
		t.Fatalf("redeliver: %s", again)
	}
	wait, stop := context.WithTimeout(t.Context(), 30*time.Second)
	defer stop()
	if err := fixed.Wait(wait, func(d []receiver.Delivery, _ int) bool { return len(d) == 2 }); err != nil {
		t.Fatalf("the redeliveries: %v", err)
	}
	ids := map[string]bool{}
	for _, dl := range fixed.Deliveries() {
		ids[dl.ID] = true
	}
	if !ids["job-conf-1/result"] || !ids["job-conf-1/confirmation"] {
		t.Errorf("redelivered %v", ids)
	}
	if !testsystem.Eventually(30*time.Second, func() bool {
		f, err := store.Failures(t.Context(), writeback.Filter{})
		return err == nil && len(f) == 0
	}) {
		t.Error("failed deliveries are left after the redeliveries")
	}
}
