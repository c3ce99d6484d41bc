package writeback_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/recoverpasscode/recoverpasscode/writeback"
	"github.com/recoverpasscode/recoverpasscode/writeback/jirasim"
	"github.com/recoverpasscode/recoverpasscode/writeback/receiver"
	"github.com/recoverpasscode/recoverpasscode/writeback/servicenowsim"
)

// TestDevReceiver is what `worker --dev` does: a receiver on loopback over
// plain HTTP, a webhook to it with a fresh secret, and writeback.Run; the
// receiver logs the verified delivery.
func TestDevReceiver(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	secret, err := writeback.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncWriter{w: &strings.Builder{}}
	log := zerolog.New(logs)
	srv, err := receiver.Start(receiver.Config{Secrets: []string{secret}, Logger: &log}, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	if !strings.HasPrefix(srv.URL(), "http://127.0.0.1:") {
		t.Errorf("URL %s", srv.URL())
	}
	cfg := testConfig(writeback.Source{Name: "ticketing", Webhooks: []writeback.Webhook{{URL: srv.URL(), Secret: secret}}})
	d, err := writeback.New(h.js, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if eps := d.Endpoints(); len(eps) != 1 || eps[0].Kind != writeback.KindWebhook || eps[0].Target != srv.URL() || !strings.HasPrefix(eps[0].Name, "webhook-") {
		t.Errorf("endpoints %+v", eps)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- writeback.Run(ctx, h.js, cfg) }()
	t.Cleanup(func() { cancel(); <-done })
	// Run's own Deliverer has no Started to wait on: publish until the
	// receiver has one, each result its own job (a result stored before
	// the consumer existed is not delivered: it starts with new results).
	waitCtx := waitCtx(t)
	got := make(chan struct{})
	go func() {
		_ = srv.Wait(waitCtx, func(d []receiver.Delivery, _ int) bool { return len(d) > 0 })
		close(got)
	}()
	for i := 0; ; i++ {
		h.publish(sampleResult(fmt.Sprintf("job-dev-%d", i), "INC1"))
		select {
		case <-got:
		case <-waitCtx.Done():
			t.Fatal("no delivery within 30s")
		case <-time.After(100 * time.Millisecond):
			continue
		}
		break
	}
	if l := logs.String(); !strings.Contains(l, "webhook delivery verified") || !strings.Contains(l, `"ticket":"INC1"`) {
		t.Errorf("the receiver's log: %s", l)
	}
	if _, err := receiver.Start(receiver.Config{Secrets: []string{secret}}, "0.0.0.0:0"); err == nil {
		t.Error("a receiver on every interface was started")
	}
}

// TestTicketAdaptersRetry: a ServiceNow instance and a Jira site that
// answer 503 and 500 at first get their work note and comment once, when
// they recover.
func TestTicketAdaptersRetry(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	snow := servicenowsim.New(servicenowsim.Config{User: "u", Password: "password-0123"})
	t.Cleanup(snow.Close)
	snow.AddRecord("incident", "INC7")
	var snowCalls, jiraCalls atomic.Int32
	snow.SetFault(func(*http.Request) int {
		if snowCalls.Add(1) <= 2 {
			return http.StatusServiceUnavailable
		}
		return 0
	})
	jira := jirasim.New(jirasim.Config{Bearer: "bearer-0123"})
	t.Cleanup(jira.Close)
	jira.AddIssue("OPS-7")
	jira.SetFault(func(*http.Request) int {
		if jiraCalls.Add(1) <= 2 {
			return http.StatusInternalServerError
		}
		return 0
	})
	cfg := testConfig(
		writeback.Source{Name: "snow", ServiceNow: &writeback.ServiceNow{Instance: snow.URL(), User: "u", Password: "password-0123"}},
		writeback.Source{Name: "jira", Jira: &writeback.Jira{Site: jira.URL(), Bearer: "bearer-0123"}},
	)
	cfg.TLS = trusting(snow.Certificate(), jira.Certificate())
	h.start(h.js, cfg)
	r := sampleResult("job-retry-1", "INC7")
	r.Source = "snow"
	h.publish(r)
	r = sampleResult("job-retry-2", "OPS-7")
	r.Source = "jira"
	h.publish(r)
	must(t, snow.WaitNotes(waitCtx(t), func(n []servicenowsim.Note) bool { return len(n) == 1 }), "the work note")
	must(t, jira.WaitComments(waitCtx(t), func(c []jirasim.Comment) bool { return len(c) == 1 }), "the comment")
	h.settled("snow", "servicenow")
	h.settled("jira", "jira")
	if n, c := len(snow.Notes()), len(jira.Comments()); n != 1 || c != 1 {
		t.Errorf("%d work notes and %d comments, want one each", n, c)
	}
}
