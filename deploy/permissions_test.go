package deploy

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/recoverpasscode/recoverpasscode/idempotency"
	"github.com/recoverpasscode/recoverpasscode/queue"
	"github.com/recoverpasscode/recoverpasscode/ratelimit"
	"github.com/recoverpasscode/recoverpasscode/wire"
)

// Names from DESIGN.md with the default prefix.
const (
	jobsStream    = "RECOVERPASSCODE_JOBS"
	resultsStream = "RECOVERPASSCODE_RESULTS"
	dlqStream     = "RECOVERPASSCODE_DLQ"
	auditStream   = "RECOVERPASSCODE_AUDIT"
	consumerName  = "worker"
	keysBucket    = "recoverpasscode_keys"
	limitsBucket  = "recoverpasscode_limits"
)

// workerBuckets are the worker's KV buckets as it declares them.
func workerBuckets(replicas int) []jetstream.KeyValueConfig {
	return []jetstream.KeyValueConfig{
		idempotency.BucketConfig(keysBucket, 0, replicas),
		ratelimit.BucketConfig(limitsBucket, replicas),
	}
}

// testPermissions runs every allowance and then every denial against the
// server at url.
func testPermissions(t *testing.T, url string, passwords map[string]string) {
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	worker := connect(t, url, "worker", passwords["worker"])
	src := make(map[string]*peer, len(sources))
	for _, s := range sources {
		src[s] = connect(t, url, s, passwords[s])
	}
	operator := connect(t, url, "operator", passwords["operator"])
	gw := connect(t, url, "gateway", passwords["gateway"])
	con := connect(t, url, "console", passwords["console"])
	plain := connectWith(t, queue.Conn{URL: url, User: "ticketing", Password: passwords["ticketing"]})

	var jobs jetstream.Consumer
	t.Run("worker declares and uses its streams, consumer and buckets", func(t *testing.T) {
		jobs = declareAsWorker(ctx, t, worker)
	})
	if t.Failed() {
		t.FailNow()
	}
	t.Run("a job travels from each source to the worker and back", func(t *testing.T) {
		roundTrip(ctx, t, worker, jobs, src)
	})
	t.Run("the operator lists and replays every source's dead letters and reads its results", func(t *testing.T) {
		operate(ctx, t, operator, jobs)
	})
	t.Run("the gateway submits jobs, waits for and reads their results", func(t *testing.T) {
		gatewayRoundTrip(ctx, t, gw, worker, jobs)
	})
	t.Run("allowed operations drew no refusal", func(t *testing.T) {
		for _, p := range []*peer{worker, src["ticketing"], src["batch"], src["automation"], operator, gw} {
			p.expectNoDenials(t)
		}
	})
	all := slices.Concat(denials(worker, src), operatorDenials(operator), gatewayDenials(gw), consoleDenials(con))
	for _, d := range append(all, inboxDenials(worker, src, operator, plain)...) {
		t.Run("refused: "+d.name, func(t *testing.T) { d.run(ctx, t) })
	}
	t.Run("a consumer whose filter differs from its create subject is rejected", func(t *testing.T) {
		filterMismatch(ctx, t, src["ticketing"])
	})
	t.Run("refused submissions stored nothing", func(t *testing.T) {
		s, err := worker.js.Stream(ctx, jobsStream)
		if err != nil {
			t.Fatal(err)
		}
		if n := s.CachedInfo().State.Msgs; n != 0 {
			t.Errorf("jobs stream holds %d messages after every accepted job was acknowledged, want 0", n)
		}
	})
}

// declareAsWorker runs the worker's own start-up declaration (package
// queue) twice, so that both the create and the update paths run, then uses
// both KV buckets.
func declareAsWorker(ctx context.Context, t *testing.T, w *peer) jetstream.Consumer {
	t.Helper()
	names := wire.Names{}
	for got, want := range map[string]string{
		names.JobsStream(): jobsStream, names.ResultsStream(): resultsStream, names.DLQStream(): dlqStream,
		names.AuditStream(): auditStream, names.KeysBucket(): keysBucket, names.LimitsBucket(): limitsBucket,
		queue.ConsumerName: consumerName,
	} {
		if got != want {
			t.Fatalf("the worker names %s where accounts.conf is written for %s", got, want)
		}
	}
	var jobs jetstream.Consumer
	for range 2 {
		var err error
		if jobs, err = (queue.Setup{}).Ensure(ctx, w.js, workerBuckets(1)...); err != nil {
			t.Fatalf("declare: %v", err)
		}
	}
	for _, bucket := range []string{keysBucket, limitsBucket} {
		kv, err := w.js.KeyValue(ctx, bucket)
		if err != nil {
			t.Fatalf("open bucket %s: %v", bucket, err)
		}
		useBucket(ctx, t, kv)
	}
	if _, err := w.js.Consumer(ctx, jobsStream, consumerName); err != nil {
		t.Fatalf("look up consumer: %v", err)
	}
	return jobs
}

// useBucket exercises every KV operation the worker may use: reads (direct
// and by revision), writes with and without expectations, deletes, purges,
// key listing and watching.
func useBucket(ctx context.Context, t *testing.T, kv jetstream.KeyValue) {
	t.Helper()
	w, err := kv.Watch(ctx, "watched.>")
	if err != nil {
		t.Fatalf("%s: watch: %v", kv.Bucket(), err)
	}
	defer func() { _ = w.Stop() }()
	// Several filters take another consumer-create subject than one.
	wf, err := kv.WatchFiltered(ctx, []string{"watched.a", "other"})
	if err != nil {
		t.Fatalf("%s: watch filtered: %v", kv.Bucket(), err)
	}
	defer func() { _ = wf.Stop() }()
	rev, err := kv.Create(ctx, "watched.a", []byte("1"))
	if err != nil {
		t.Fatalf("%s: create: %v", kv.Bucket(), err)
	}
	// Update returns the latest revision, the one a bucket with a history
	// of one still holds.
	if rev, err = kv.Update(ctx, "watched.a", []byte("2"), rev); err != nil {
		t.Fatalf("%s: update: %v", kv.Bucket(), err)
	}
	otherRev, err := kv.Put(ctx, "other", []byte("x"))
	if err != nil {
		t.Fatalf("%s: put: %v", kv.Bucket(), err)
	}
	if e, err := kv.Get(ctx, "watched.a"); err != nil || string(e.Value()) != "2" {
		t.Fatalf("%s: get = %v, %v; want 2", kv.Bucket(), e, err)
	}
	if _, err := kv.GetRevision(ctx, "watched.a", rev); err != nil {
		t.Fatalf("%s: get revision: %v", kv.Bucket(), err)
	}
	if err := kv.Delete(ctx, "other", jetstream.LastRevision(otherRev)); err != nil {
		t.Fatalf("%s: delete: %v", kv.Bucket(), err)
	}
	if _, err := kv.Keys(ctx); err != nil {
		t.Fatalf("%s: keys: %v", kv.Bucket(), err)
	}
	if err := kv.PurgeDeletes(ctx, jetstream.DeleteMarkersOlderThan(-1)); err != nil {
		t.Fatalf("%s: purge deletes: %v", kv.Bucket(), err)
	}
	// With a history of one, the update may replace the created value
	// before the watcher gets it; the latest value always arrives.
	for {
		select {
		case e := <-w.Updates():
			if e != nil && e.Key() == "watched.a" && string(e.Value()) == "2" {
				return
			}
		case <-ctx.Done():
			t.Fatalf("%s: the watcher never saw the update", kv.Bucket())
		}
	}
}

// job is the part of a job the round trip needs.
type job struct {
	ID              string `json:"id"`
	ManagedDeviceID string `json:"managedDeviceId"`
	ReplyTo         string `json:"replyTo"`
}

// roundTrip submits one job per source, has the worker take, acknowledge and
// answer each as it would (result stream, dead letters, audit, inbox reply),
// and has each source read its answer by core subscription, from its inbox
// and through a JetStream consumer on the results stream.
func roundTrip(ctx context.Context, t *testing.T, w *peer, jobs jetstream.Consumer, src map[string]*peer) {
	t.Helper()
	results := make(map[string]*nats.Subscription, len(src))
	inboxes := make(map[string]*nats.Subscription, len(src))
	for name, p := range src {
		var err error
		if results[name], err = p.nc.SubscribeSync("recoverpasscode.results." + name + ".>"); err != nil {
			t.Fatal(err)
		}
		if inboxes[name], err = p.nc.SubscribeSync(p.nc.NewInbox()); err != nil {
			t.Fatal(err)
		}
		if err := p.nc.FlushWithContext(ctx); err != nil {
			t.Fatal(err)
		}
		body, _ := json.Marshal(job{ID: name + "-1", ManagedDeviceID: "0f6a7a2c-3d1e-4a6b-9c1d-2b7e8f9a0b1c", ReplyTo: inboxes[name].Subject})
		ack, err := p.js.Publish(ctx, "recoverpasscode.jobs."+name, body, jetstream.WithMsgID(name+"-1"), jetstream.WithExpectStream(jobsStream))
		if err != nil {
			t.Fatalf("%s: submit: %v", name, err)
		}
		if ack.Duplicate {
			t.Fatalf("%s: first submission acknowledged as a duplicate", name)
		}
	}

	for answered := 0; answered < len(src); {
		batch, err := jobs.Fetch(len(src)-answered, jetstream.FetchContext(ctx))
		if err != nil {
			t.Fatalf("worker: fetch: %v", err)
		}
		for msg := range batch.Messages() {
			answer(ctx, t, w, msg)
			answered++
		}
		if err := batch.Error(); err != nil {
			t.Fatalf("worker: fetch: %v", err)
		}
	}

	for name, p := range src {
		want := "recoverpasscode.results." + name + "." + name + "-1"
		if m, err := results[name].NextMsg(denialWait); err != nil || m.Subject != want {
			t.Errorf("%s: result by subscription: %v, %v; want one on %s", name, m, err, want)
		}
		if _, err := inboxes[name].NextMsg(denialWait); err != nil {
			t.Errorf("%s: result in the inbox: %v", name, err)
		}
		readOwnResults(ctx, t, p, want)
	}
}

// answer acknowledges msg and publishes what the worker publishes for it.
func answer(ctx context.Context, t *testing.T, w *peer, msg jetstream.Msg) {
	t.Helper()
	var j job
	if err := json.Unmarshal(msg.Data(), &j); err != nil {
		t.Fatalf("worker: job: %v", err)
	}
	source := strings.TrimPrefix(msg.Subject(), "recoverpasscode.jobs.")
	if err := msg.InProgress(); err != nil {
		t.Fatalf("worker: progress on %s: %v", j.ID, err)
	}
	if err := msg.DoubleAck(ctx); err != nil {
		t.Fatalf("worker: acknowledge %s: %v", j.ID, err)
	}
	result := []byte(`{"jobId":"` + j.ID + `","status":"succeeded"}`)
	for subject, stream := range map[string]string{
		"recoverpasscode.results." + source + "." + j.ID:                            resultsStream,
		"recoverpasscode.dlq." + source:                                             dlqStream,
		"recoverpasscode.audit." + source + "._." + j.ManagedDeviceID + ".20261202": auditStream,
	} {
		if _, err := w.js.Publish(ctx, subject, result, jetstream.WithMsgID(j.ID+"/result"), jetstream.WithExpectStream(stream)); err != nil {
			t.Fatalf("worker: publish to %s: %v", subject, err)
		}
	}
	if err := w.nc.Publish(j.ReplyTo, result); err != nil {
		t.Fatalf("worker: reply: %v", err)
	}
}

// readOwnResults reads the source's stored result through an ordered
// consumer filtered to its own results, as a client that reconnects later
// would.
func readOwnResults(ctx context.Context, t *testing.T, p *peer, want string) {
	t.Helper()
	s, err := p.js.Stream(ctx, resultsStream)
	if err != nil {
		t.Fatalf("%s: results stream: %v", p.user, err)
	}
	c, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{"recoverpasscode.results." + p.user + ".>"}})
	if err != nil {
		t.Fatalf("%s: consumer on its results: %v", p.user, err)
	}
	m, err := c.Next(jetstream.FetchContext(ctx))
	if err != nil {
		t.Fatalf("%s: read its result: %v", p.user, err)
	}
	if m.Subject() != want {
		t.Errorf("%s: read %s, want %s", p.user, m.Subject(), want)
	}
}

// filterMismatch asks for a consumer over every result through the create
// subject of the source's own filter: the permission lets the request
// through, and nats-server itself must reject it.
func filterMismatch(ctx context.Context, t *testing.T, p *peer) {
	t.Helper()
	subject := "$JS.API.CONSUMER.CREATE." + resultsStream + ".sneak.recoverpasscode.results." + p.user + ".>"
	req := `{"stream_name":"` + resultsStream + `","config":{"name":"sneak","filter_subject":"recoverpasscode.results.>","ack_policy":"none","deliver_policy":"all"}}`
	msg, err := p.nc.RequestWithContext(ctx, subject, []byte(req))
	if err != nil {
		t.Fatalf("request: %v", err)
	}
	var resp struct {
		Error *server.ApiError `json:"error"`
	}
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		t.Fatal(err)
	}
	want := server.ApiErrors[server.JSConsumerCreateFilterSubjectMismatchErr].ErrCode
	if resp.Error == nil || resp.Error.ErrCode != want {
		t.Fatalf("response %s, want error code %d", msg.Data, want)
	}
	p.expectNoDenials(t)
}
