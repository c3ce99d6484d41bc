package deploy

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/recoverpasscode/recoverpasscode/graph/graphsim"
	"github.com/recoverpasscode/recoverpasscode/internal/testsystem"
	"github.com/recoverpasscode/recoverpasscode/wire"
)

// inboxDenials lists what the per-user inboxes of accounts.conf refuse:
// reading any inbox but one's own, answering into the worker's own, and a
// client left on nats.go's plain "_INBOX" prefix, whose first request
// cannot get its reply (plain is such a client, logged in as ticketing).
func inboxDenials(worker *peer, src map[string]*peer, op, plain *peer) []denial {
	ticketing := src["ticketing"]
	return []denial{
		{name: "ticketing subscribes to every inbox", who: ticketing, kind: "subscription",
			subject: "_INBOX.>", do: subscribe("_INBOX.>")},
		{name: "ticketing subscribes to batch's inboxes", who: ticketing, kind: "subscription",
			subject: "_INBOX.batch.>", do: subscribe("_INBOX.batch.>")},
		{name: "ticketing subscribes to one of batch's inboxes", who: ticketing, kind: "subscription",
			subject: "_INBOX.batch.x", do: subscribe("_INBOX.batch.x")},
		{name: "batch subscribes to the worker's inboxes", who: src["batch"], kind: "subscription",
			subject: "_INBOX.worker.>", do: subscribe("_INBOX.worker.>")},
		{name: "automation subscribes to the operator's inboxes", who: src["automation"], kind: "subscription",
			subject: "_INBOX.operator.>", do: subscribe("_INBOX.operator.>")},
		{name: "worker subscribes to every inbox", who: worker, kind: "subscription",
			subject: "_INBOX.>", do: subscribe("_INBOX.>")},
		{name: "worker subscribes to ticketing's inboxes", who: worker, kind: "subscription",
			subject: "_INBOX.ticketing.>", do: subscribe("_INBOX.ticketing.>")},
		{name: "operator subscribes to every inbox", who: op, kind: "subscription",
			subject: "_INBOX.>", do: subscribe("_INBOX.>")},
		{name: "operator subscribes to batch's inboxes", who: op, kind: "subscription",
			subject: "_INBOX.batch.>", do: subscribe("_INBOX.batch.>")},
		{name: "ticketing answers into batch's inbox", who: ticketing, kind: "publish",
			subject: "_INBOX.batch.x", do: publish("_INBOX.batch.x")},
		{name: "worker answers into its own inbox", who: worker, kind: "publish",
			subject: "_INBOX.worker.x", do: publish("_INBOX.worker.x")},
		{name: "a client without an inbox prefix asks for the results stream", who: plain, kind: "subscription",
			subject: "_INBOX.*.*",
			do:      func(ctx context.Context, p *peer) error { _, err := p.js.Stream(ctx, resultsStream); return err }},
	}
}

// TestInboxReplies runs a real worker as the deploy files configure it
// (NATS_INBOX_PREFIX=_INBOX.worker, RECOVER_INBOX_PER_SOURCE=true) against
// nats/dev.conf: a ticketing job whose replyTo is one of ticketing's inboxes
// is answered there; a batch job naming that same inbox is rejected with a
// reason that names batch's own inboxes, and nothing reaches ticketing's.
func TestInboxReplies(t *testing.T) {
	passwords := setPasswords(t)
	url := startFromConfig(t, filepath.Join("nats", "dev.conf"), nil).ClientURL()
	sys := testsystem.Start(t, graphsim.Config{Limit: -1}) // for its Graph double
	logs := startWorker(t, sys, url, passwords["worker"])
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	ticketing := connect(t, url, "ticketing", passwords["ticketing"])
	batch := connect(t, url, "batch", passwords["batch"])

	inbox, err := ticketing.nc.SubscribeSync(ticketing.nc.NewInbox())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(inbox.Subject, "_INBOX.ticketing.") {
		t.Fatalf("ticketing's inbox %s, want one under _INBOX.ticketing.", inbox.Subject)
	}
	submitWithReply(ctx, t, ticketing, "ticket-1", testsystem.DeviceN(1), inbox.Subject)
	m, err := inbox.NextMsg(denialWait)
	if err != nil {
		t.Fatalf("ticketing's inbox got no answer: %v\n%s", err, logs)
	}
	var res wire.Result
	if err := json.Unmarshal(m.Data, &res); err != nil || res.JobID != "ticket-1" || res.Status != wire.Succeeded {
		t.Fatalf("answer in ticketing's inbox: %s (%v), want ticket-1 succeeded", m.Data, err)
	}

	submitWithReply(ctx, t, batch, "spoof-1", testsystem.DeviceN(2), inbox.Subject)
	res = ownResult(ctx, t, batch, "spoof-1")
	if res.Status != wire.Rejected || !strings.Contains(res.Error, "_INBOX.batch.") {
		t.Errorf("batch's job naming ticketing's inbox: %s, %q; want rejected, naming _INBOX.batch.", res.Status, res.Error)
	}
	if n := sys.GS.Performed(testsystem.DeviceN(2)); n != 0 {
		t.Errorf("the rejected job recovered its device %d times", n)
	}
	w := connect(t, url, "worker", passwords["worker"])
	jobsDone := func() bool {
		// The worker acknowledges (or terminates) a job only after it has
		// sent every reply for it, on the same connection.
		s, err := w.js.Stream(ctx, jobsStream)
		return err == nil && s.CachedInfo().State.Msgs == 0
	}
	expectNothingIn(ctx, t, ticketing, inbox, jobsDone)
	ticketing.expectNoDenials(t)
	batch.expectNoDenials(t)
	expectNoWorkerDenials(t, logs)
}

// submitWithReply publishes a job as p on its own source's subject.
func submitWithReply(ctx context.Context, t *testing.T, p *peer, id, device, replyTo string) {
	t.Helper()
	body, _ := json.Marshal(job{ID: id, ManagedDeviceID: device, ReplyTo: replyTo})
	if _, err := p.js.Publish(ctx, wire.Names{}.Jobs(p.user), body, jetstream.WithMsgID(id), jetstream.WithExpectStream(jobsStream)); err != nil {
		t.Fatalf("%s: submit %s: %v", p.user, id, err)
	}
}

// ownResult reads the stored result of the job id of p's own source.
func ownResult(ctx context.Context, t *testing.T, p *peer, id string) wire.Result {
	t.Helper()
	c, err := p.js.OrderedConsumer(ctx, resultsStream, jetstream.OrderedConsumerConfig{FilterSubjects: []string{wire.Names{}.Result(p.user, id)}})
	if err != nil {
		t.Fatalf("%s: consumer on its result %s: %v", p.user, id, err)
	}
	m, err := c.Next(jetstream.FetchContext(ctx))
	if err != nil {
		t.Fatalf("%s: read its result %s: %v", p.user, id, err)
	}
	var res wire.Result
	if err := json.Unmarshal(m.Data(), &res); err != nil {
		t.Fatal(err)
	}
	return res
}

// expectNothingIn proves that no message reached sub once done holds: the
// server answers p's flush only after delivering to p everything sent to it
// before, such as a reply the worker sent before it finished its jobs.
func expectNothingIn(ctx context.Context, t *testing.T, p *peer, sub *nats.Subscription, done func() bool) {
	t.Helper()
	if !testsystem.Eventually(denialWait, done) {
		t.Fatal("the worker did not finish its jobs")
	}
	if err := p.nc.FlushWithContext(ctx); err != nil {
		t.Fatal(err)
	}
	if n, _, err := sub.Pending(); err != nil || n != 0 {
		var first []byte
		if m, err := sub.NextMsg(0); err == nil {
			first = m.Data
		}
		t.Errorf("%d message(s) reached %s's inbox (%v); the first: %s", n, p.user, err, first)
	}
}
