package writeback_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/recoverpasscode/recoverpasscode/writeback"
	"github.com/recoverpasscode/recoverpasscode/writeback/receiver"
	"github.com/recoverpasscode/recoverpasscode/writeback/servicenowsim"
)

// TestFailedDeliveriesAreKeptAndRedelivered: a receiver that holds another
// secret, one that answers 410 Gone and a ticket no record has each end as
// their own failed delivery with the reason; once the cause is fixed,
// redelivering each delivers it, and the endpoint 410 disabled takes its
// waiting results again.
func TestFailedDeliveriesAreKeptAndRedelivered(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	sent, held := mustNewSecret(t), mustNewSecret(t)

	// A receiver that verifies with a secret the deliverer does not have.
	wrong := &switchable{}
	wrongRcv := newReceiver(t, held)
	wrong.set(wrongRcv)
	wrongSrv := httptest.NewTLSServer(wrong)
	t.Cleanup(wrongSrv.Close)

	// A receiver that is gone, and counts what reaches it.
	var goneHits atomic.Int32
	gone := &switchable{}
	gone.set(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		goneHits.Add(1)
		http.Error(w, "this hook was removed", http.StatusGone)
	}))
	goneSrv := httptest.NewTLSServer(gone)
	t.Cleanup(goneSrv.Close)

	snow := servicenowsim.New(servicenowsim.Config{User: "u", Password: "password-0123"})
	t.Cleanup(snow.Close)

	cfg := testConfig(
		writeback.Source{Name: "wrong", Webhooks: []writeback.Webhook{{Name: "hook", URL: wrongSrv.URL, Secret: sent}}},
		writeback.Source{Name: "gone", Webhooks: []writeback.Webhook{{Name: "hook", URL: goneSrv.URL, Secret: sent}}},
		writeback.Source{Name: "snow", ServiceNow: &writeback.ServiceNow{Instance: snow.URL(), User: "u", Password: "password-0123"}},
	)
	cfg.TLS = trusting(wrongSrv.Certificate(), goneSrv.Certificate(), snow.Certificate())
	d := h.start(h.js, cfg)

	for _, src := range []string{"wrong", "gone", "snow"} {
		r := sampleResult("job-"+src, "INC0000404")
		r.Source = src
		h.publish(r)
	}
	rejected := h.failures(writeback.Filter{Source: "wrong"}, 1)[0]
	if rejected.Outcome != writeback.OutcomeRejected || rejected.Status != http.StatusUnauthorized || rejected.Attempts != 3 ||
		!strings.Contains(rejected.Body, "no webhook-signature matches") || !strings.Contains(rejected.Reason, "refused 3 time(s)") {
		t.Errorf("wrong secret: %+v", rejected)
	}
	goneF := h.failures(writeback.Filter{Source: "gone"}, 1)[0]
	if goneF.Outcome != writeback.OutcomeGone || goneF.Status != http.StatusGone || goneF.Attempts != 1 || !strings.Contains(goneF.Body, "this hook was removed") {
		t.Errorf("410: %+v", goneF)
	}
	notFound := h.failures(writeback.Filter{Source: "snow"}, 1)[0]
	if notFound.Outcome != writeback.OutcomeNotFound || notFound.Reason != "no incident record is numbered INC0000404" {
		t.Errorf("unknown ticket: %+v", notFound)
	}
	for _, f := range []writeback.Failure{rejected, goneF, notFound} {
		if strings.Contains(f.Body+f.Reason, sent) || strings.Contains(f.Body+f.Reason, "password-0123") {
			t.Errorf("a failure holds a secret: %+v", f)
		}
	}

	// The gone endpoint is disabled: a new result waits, unattempted.
	h.eventually(func(ctx context.Context) bool {
		dis, err := h.store.Disabled(ctx)
		return err == nil && len(dis) == 1 && dis[0].Source == "gone" && dis[0].JobID == "job-gone"
	}, "the gone endpoint listed as disabled")
	waiting := sampleResult("job-gone-2", "INC1")
	waiting.Source = "gone"
	h.publish(waiting)
	h.eventually(func(ctx context.Context) bool {
		return value(d.reg, "recoverpasscode_delivery_oldest_undelivered_seconds", "gone", "hook") > 0
	}, "the waiting result to show as undelivered")
	if n := goneHits.Load(); n != 1 {
		t.Fatalf("the disabled endpoint got %d requests, want the one that disabled it", n)
	}

	// Fix each cause, then redeliver.
	fixed := newReceiver(t, held, sent)
	wrong.set(fixed)
	back := newReceiver(t, sent)
	gone.set(back)
	snow.AddRecord("incident", "INC0000404")
	ctx := waitCtx(t)
	for _, f := range []writeback.Failure{rejected, goneF, notFound} {
		reenabled, err := h.store.Redeliver(ctx, f, "operator@example.com")
		if err != nil {
			t.Fatalf("redeliver %s: %v", f.JobID, err)
		}
		if reenabled != (f.Source == "gone") {
			t.Errorf("redeliver %s: reenabled %v", f.JobID, reenabled)
		}
	}
	if _, err := h.store.Redeliver(ctx, rejected, "again"); err == nil {
		t.Error("a second redelivery of the same listing was accepted")
	}
	must(t, fixed.Wait(ctx, func(d []receiver.Delivery, _ int) bool { return len(d) >= 1 }), "the wrong-secret delivery redelivered")
	must(t, back.Wait(ctx, func(d []receiver.Delivery, _ int) bool { return len(d) >= 2 }), "the gone endpoint's two results")
	must(t, snow.WaitNotes(ctx, func(n []servicenowsim.Note) bool { return len(n) >= 1 }), "the work note redelivered")
	for _, src := range []string{"wrong", "gone", "snow"} {
		h.failures(writeback.Filter{Source: src}, 0)
	}
	if dis, err := h.store.Disabled(ctx); err != nil || len(dis) != 0 {
		t.Errorf("disabled endpoints after redelivery: %v %v", dis, err)
	}
	got := map[string]bool{}
	for _, dl := range back.Deliveries() {
		got[dl.ID] = true
	}
	if !got["job-gone/result"] || !got["job-gone-2/result"] {
		t.Errorf("the re-enabled endpoint got %v", got)
	}
	h.eventually(func(context.Context) bool {
		return value(d.reg, "recoverpasscode_delivery_failures_kept", "wrong", "hook") == 0 &&
			value(d.reg, "recoverpasscode_delivery_endpoint_disabled", "gone", "hook") == 0
	}, "the gauges to clear")
	for _, c := range []struct {
		source, outcome string
		want            float64
	}{{"wrong", "rejected", 1}, {"wrong", "delivered", 1}, {"gone", "gone", 1}, {"gone", "delivered", 2}, {"snow", "not-found", 1}, {"snow", "delivered", 1}} {
		endpoint := "hook"
		if c.source == "snow" {
			endpoint = "servicenow"
		}
		if got := value(d.reg, "recoverpasscode_deliveries_total", c.source, endpoint, "outcome", c.outcome); got != c.want {
			t.Errorf("deliveries_total{%s, %s} = %v, want %v", c.source, c.outcome, got, c.want)
		}
	}
}

// TestADownEndpointDelaysNoOther: with one endpoint of a source hanging on
// every request, another gets every result long before the first attempt
// at the hanging one has even timed out.
func TestADownEndpointDelaysNoOther(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	secret := mustNewSecret(t)
	hang := httptest.NewTLSServer(http.HandlerFunc(hangUp))
	t.Cleanup(hang.Close)
	rcv := newReceiver(t, secret)
	up := httptest.NewTLSServer(rcv)
	t.Cleanup(up.Close)
	cfg := testConfig(writeback.Source{Name: "ticketing", Webhooks: []writeback.Webhook{
		{Name: "hanging", URL: hang.URL, Secret: secret},
		{Name: "up", URL: up.URL, Secret: secret},
	}})
	cfg.Timeout = 20 * time.Second
	cfg.AckWait = 30 * time.Second
	cfg.TLS = trusting(up.Certificate())
	h.start(h.js, cfg)
	began := time.Now()
	const n = 100
	for i := range n {
		h.publish(sampleResult(fmt.Sprintf("job-%04d", i), "INC1"))
	}
	must(t, rcv.Wait(waitCtx(t), func(d []receiver.Delivery, _ int) bool { return len(d) >= n }), "every result at the endpoint that is up")
	if took := time.Since(began); took >= cfg.Timeout {
		t.Errorf("the endpoint that is up took %s, as long as the other's timeout", took)
	}
}

func newReceiver(t *testing.T, secrets ...string) *receiver.Receiver {
	t.Helper()
	r, err := receiver.New(receiver.Config{Secrets: secrets})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func mustNewSecret(t *testing.T) string {
	t.Helper()
	s, err := writeback.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// hangUp answers nothing until the client gives up. It reads the body
// first: only then does the server notice the client closing.
func hangUp(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, r.Body)
	<-r.Context().Done()
	// Returning would send an empty 200, which a client racing its own
	// cancellation can still read as an answer: abort the response.
	panic(http.ErrAbortHandler)
}
