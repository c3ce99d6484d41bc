package deploy

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/recoverpasscode/recoverpasscode/batch"
	"github.com/recoverpasscode/recoverpasscode/wire"
	// Imported under another name: job is the test's own job type.
)

// operate does, as the operator and with the library calls they make, what
// `enqueue dlq list`, `enqueue dlq replay` and `enqueue results` do: read
// the dead letters of every source and of one, replay each to its source's
// jobs subject (the worker takes the replays), and read each source's
// stored results. It runs after roundTrip, which left one dead letter and
// one result per source.
func operate(ctx context.Context, t *testing.T, op *peer, jobs jetstream.Consumer) {
	t.Helper()
	// Each step takes milliseconds; a refused one waits out this bound
	// rather than the time of the tests that follow.
	ctx, cancel := context.WithTimeout(ctx, denialWait)
	defer cancel()
	names := wire.Names{}
	letters := readStored(ctx, t, op, dlqStream, names.DLQWildcard())
	var bySource []string
	for _, m := range letters {
		bySource = append(bySource, dlqSource(m))
	}
	slices.Sort(bySource)
	if want := slices.Sorted(slices.Values(sources)); !slices.Equal(bySource, want) {
		t.Fatalf("dead letters of sources %v, want one of each of %v", bySource, want)
	}
	if one := readStored(ctx, t, op, dlqStream, names.DLQ("batch")); len(one) != 1 || one[0].Subject() != names.DLQ("batch") {
		t.Errorf("dead letters of source batch: %d, want 1", len(one))
	}

	for _, m := range letters {
		replayAsOperator(ctx, t, op, m)
	}
	takeReplays(ctx, t, jobs, len(letters))

	for _, s := range sources {
		r, err := batch.OpenResults(ctx, op.js, names, names.Result(s, ">"))
		if err != nil {
			t.Fatalf("results of %s: %v", s, err)
		}
		var got []string
		_, err = r.ReadBacklog(ctx, func(res wire.Result) { got = append(got, res.JobID) })
		r.Close()
		if err != nil || !slices.Equal(got, []string{s + "-1"}) {
			t.Errorf("results of %s: %v, %v; want the job %s-1", s, got, err, s)
		}
	}
}

// dlqSource is the source of a dead letter: the last token of its subject.
func dlqSource(m jetstream.Msg) string {
	return strings.TrimPrefix(m.Subject(), "recoverpasscode.dlq.")
}

// readStored reads what stream holds under filter as the dead-letter list
// does: through batch.OpenStream, until the backlog is read.
func readStored(ctx context.Context, t *testing.T, p *peer, stream, filter string) []jetstream.Msg {
	t.Helper()
	r, err := batch.OpenStream(ctx, p.js, stream, filter)
	if err != nil {
		t.Fatalf("%s: read %s (%s): %v", p.user, stream, filter, err)
	}
	defer r.Close()
	var out []jetstream.Msg
	for !r.CaughtUp() {
		m, err := r.NextStored(ctx)
		if err != nil {
			t.Fatalf("%s: read %s (%s): %v", p.user, stream, filter, err)
		}
		out = append(out, m)
	}
	return out
}

// replayAsOperator publishes the dead letter's job again as enqueue's
// publishJob does: on its source's jobs subject, with the replay's id as
// Nats-Msg-Id, acknowledged by the jobs stream.
func replayAsOperator(ctx context.Context, t *testing.T, op *peer, letter jetstream.Msg) {
	t.Helper()
	names := wire.Names{}
	source := dlqSource(letter)
	meta, err := letter.Metadata()
	if err != nil {
		t.Fatal(err)
	}
	id := batch.ReplayID(source+"-1", meta.Sequence.Stream)
	m := nats.NewMsg(names.Jobs(source))
	m.Data, _ = json.Marshal(job{ID: id, ManagedDeviceID: "0f6a7a2c-3d1e-4a6b-9c1d-2b7e8f9a0b1c"})
	m.Header.Set(jetstream.MsgIDHeader, id)
	ack, err := op.js.PublishMsg(ctx, m)
	if err != nil {
		t.Fatalf("replay to %s: %v", m.Subject, err)
	}
	if ack.Stream != jobsStream || ack.Duplicate {
		t.Errorf("replay to %s stored in %s (duplicate %v), want a new job in %s", m.Subject, ack.Stream, ack.Duplicate, jobsStream)
	}
}

// takeReplays has the worker take and acknowledge n replayed jobs, so that
// the jobs stream is empty again.
func takeReplays(ctx context.Context, t *testing.T, jobs jetstream.Consumer, n int) {
	t.Helper()
	for taken := 0; taken < n; {
		msgs, err := jobs.Fetch(n-taken, jetstream.FetchContext(ctx))
		if err != nil {
			t.Fatalf("worker: fetch replays: %v", err)
		}
		for m := range msgs.Messages() {
			if err := m.DoubleAck(ctx); err != nil {
				t.Fatalf("worker: acknowledge replay: %v", err)
			}
			taken++
		}
		if err := msgs.Error(); err != nil {
			t.Fatalf("worker: fetch replays: %v", err)
		}
	}
}

// operatorDenials lists what the operator must not be able to do: change
// or delete anything stored, use the worker's consumer or buckets, read
// what its commands do not read, or publish what only the worker publishes.
func operatorDenials(op *peer) []denial {
	return []denial{
		// Streams, messages and consumers stay as they are.
		{name: "operator deletes the DLQ stream", who: op, kind: "publish",
			subject: "$JS.API.STREAM.DELETE." + dlqStream,
			do:      func(ctx context.Context, p *peer) error { return p.js.DeleteStream(ctx, dlqStream) }},
		{name: "operator purges the DLQ stream", who: op, kind: "publish",
			subject: "$JS.API.STREAM.PURGE." + dlqStream, do: request("$JS.API.STREAM.PURGE."+dlqStream, `{}`)},
		{name: "operator deletes a dead letter", who: op, kind: "publish",
			subject: "$JS.API.STREAM.MSG.DELETE." + dlqStream, do: request("$JS.API.STREAM.MSG.DELETE."+dlqStream, `{"seq":1}`)},
		{name: "operator changes the DLQ stream's configuration", who: op, kind: "publish",
			subject: "$JS.API.STREAM.UPDATE." + dlqStream,
			do: func(ctx context.Context, p *peer) error {
				_, err := p.js.UpdateStream(ctx, jetstream.StreamConfig{Name: dlqStream, Subjects: []string{"recoverpasscode.dlq.>"}, MaxAge: time.Hour})
				return err
			}},
		{name: "operator deletes a consumer of the DLQ stream", who: op, kind: "publish",
			subject: "$JS.API.CONSUMER.DELETE." + dlqStream + ".reader",
			do:      func(ctx context.Context, p *peer) error { return p.js.DeleteConsumer(ctx, dlqStream, "reader") }},
		{name: "operator deletes the worker consumer", who: op, kind: "publish",
			subject: "$JS.API.CONSUMER.DELETE." + jobsStream + "." + consumerName,
			do:      func(ctx context.Context, p *peer) error { return p.js.DeleteConsumer(ctx, jobsStream, consumerName) }},
		{name: "operator reconfigures the worker consumer", who: op, kind: "publish",
			subject: "$JS.API.CONSUMER.CREATE." + jobsStream + "." + consumerName + ".recoverpasscode.jobs.>",
			do: func(ctx context.Context, p *peer) error {
				_, err := p.js.CreateOrUpdateConsumer(ctx, jobsStream, jetstream.ConsumerConfig{Durable: consumerName, FilterSubject: "recoverpasscode.jobs.>"})
				return err
			}},
		{name: "operator pulls jobs from the worker consumer", who: op, kind: "publish",
			subject: "$JS.API.CONSUMER.MSG.NEXT." + jobsStream + "." + consumerName,
			do:      request("$JS.API.CONSUMER.MSG.NEXT."+jobsStream+"."+consumerName, `{"batch":1}`)},

		// The buckets are the worker's.
		{name: "operator writes an idempotency record", who: op, kind: "publish",
			subject: "$KV." + keysBucket + ".key", do: publish("$KV." + keysBucket + ".key")},
		{name: "operator opens the idempotency bucket", who: op, kind: "publish",
			subject: "$JS.API.STREAM.INFO.KV_" + keysBucket,
			do:      func(ctx context.Context, p *peer) error { _, err := p.js.KeyValue(ctx, keysBucket); return err }},
		{name: "operator reads an idempotency record directly", who: op, kind: "publish",
			subject: "$JS.API.DIRECT.GET.KV_" + keysBucket + ".$KV." + keysBucket + ".key",
			do:      request("$JS.API.DIRECT.GET.KV_"+keysBucket+".$KV."+keysBucket+".key", "")},
		{name: "operator pauses a tenant in the rate-limit bucket", who: op, kind: "publish",
			subject: "$KV." + limitsBucket + ".tenant", do: publish("$KV." + limitsBucket + ".tenant")},
		{name: "operator writes a learned budget in the rate-limit bucket", who: op, kind: "publish",
			subject: "$KV." + limitsBucket + ".budget.app.tenant", do: publish("$KV." + limitsBucket + ".budget.app.tenant")},
		{name: "operator admits a held job without releasing it", who: op, kind: "publish",
			subject: "$KV." + limitsBucket + ".admitted.judge.j1", do: publish("$KV." + limitsBucket + ".admitted.judge.j1")},
		{name: "operator reads a rate-limit window directly", who: op, kind: "publish",
			subject: "$JS.API.DIRECT.GET.KV_" + limitsBucket + ".$KV." + limitsBucket + ".window.app.tenant",
			do:      request("$JS.API.DIRECT.GET.KV_"+limitsBucket+".$KV."+limitsBucket+".window.app.tenant", "")},
		{name: "operator reads the rate-limit bucket beyond the held records", who: op, kind: "publish",
			subject: "$JS.API.CONSUMER.CREATE.KV_" + limitsBucket + ".*.$KV." + limitsBucket + ".>",
			do:      orderedOn("KV_"+limitsBucket, "$KV."+limitsBucket+".>")},

		// The deliveries bucket is used, never changed, and its
		// deliveries are the gateway's to make.
		{name: "operator deletes the deliveries bucket", who: op, kind: "publish",
			subject: "$JS.API.STREAM.DELETE.KV_recoverpasscode_deliveries",
			do: func(ctx context.Context, p *peer) error {
				return p.js.DeleteKeyValue(ctx, "recoverpasscode_deliveries")
			}},
		{name: "operator purges the deliveries bucket", who: op, kind: "publish",
			subject: "$JS.API.STREAM.PURGE.KV_recoverpasscode_deliveries", do: request("$JS.API.STREAM.PURGE.KV_recoverpasscode_deliveries", `{}`)},
		{name: "operator pulls a write-back redelivery consumer", who: op, kind: "publish",
			subject: "$JS.API.CONSUMER.MSG.NEXT.KV_recoverpasscode_deliveries.writeback_ticketing_x",
			do:      request("$JS.API.CONSUMER.MSG.NEXT.KV_recoverpasscode_deliveries.writeback_ticketing_x", `{"batch":1}`)},
		{name: "operator acknowledges a result delivery", who: op, kind: "publish",
			subject: "$JS.ACK." + resultsStream + ".writeback_ticketing_x.1.1.1.1.0", do: publish("$JS.ACK." + resultsStream + ".writeback_ticketing_x.1.1.1.1.0")},

		// What only the worker publishes.
		{name: "operator publishes a result", who: op, kind: "publish",
			subject: "recoverpasscode.results.batch.x", do: publish("recoverpasscode.results.batch.x")},
		{name: "operator forges a dead letter", who: op, kind: "publish",
			subject: "recoverpasscode.dlq.batch", do: publish("recoverpasscode.dlq.batch")},
		{name: "operator publishes an audit event", who: op, kind: "publish",
			subject: "recoverpasscode.audit.batch.9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d.0f6a7a2c-3d1e-4a6b-9c1d-2b7e8f9a0b1c", do: publish("recoverpasscode.audit.batch.9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d.0f6a7a2c-3d1e-4a6b-9c1d-2b7e8f9a0b1c")},
		{name: "operator answers an inbox", who: op, kind: "publish",
			subject: "_INBOX.someone", do: publish("_INBOX.someone")},
		{name: "operator submits a job on a subject that is not a source's", who: op, kind: "publish",
			subject: "recoverpasscode.jobs.batch.extra", do: publish("recoverpasscode.jobs.batch.extra")},

		// Reading only the DLQ and the results, only as its commands do.
		{name: "operator subscribes to jobs", who: op, kind: "subscription",
			subject: "recoverpasscode.jobs.>", do: subscribe("recoverpasscode.jobs.>")},
		{name: "operator reads jobs through a consumer", who: op, kind: "publish",
			subject: "$JS.API.CONSUMER.CREATE." + jobsStream + ".*.recoverpasscode.jobs.>",
			do:      orderedOn(jobsStream, "recoverpasscode.jobs.>")},
		{name: "operator reads the audit stream", who: op, kind: "publish",
			subject: "$JS.API.CONSUMER.CREATE." + auditStream + ".*.recoverpasscode.audit.>",
			do:      orderedOn(auditStream, "recoverpasscode.audit.>")},
		{name: "operator reads the DLQ through an unfiltered consumer", who: op, kind: "publish",
			subject: "$JS.API.CONSUMER.CREATE." + dlqStream + ".*",
			do:      orderedOn(dlqStream)},
		{name: "operator subscribes to results", who: op, kind: "subscription",
			subject: "recoverpasscode.results.>", do: subscribe("recoverpasscode.results.>")},

		// Other accounts.
		{name: "operator asks the system account for every connection", who: op, kind: "publish",
			subject: "$SYS.REQ.SERVER.PING.CONNZ", do: request("$SYS.REQ.SERVER.PING.CONNZ", `{}`)},
		{name: "operator subscribes to system events", who: op, kind: "subscription",
			subject: "$SYS.>", do: subscribe("$SYS.>")},
		{name: "operator lists the account's streams", who: op, kind: "publish",
			subject: "$JS.API.STREAM.NAMES", do: request("$JS.API.STREAM.NAMES", `{}`)},
	}
}

// orderedOn is a denial action: an ordered consumer over stream with the
// given filter subjects.
func orderedOn(stream string, filters ...string) func(context.Context, *peer) error {
	return func(ctx context.Context, p *peer) error {
		_, err := p.js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{FilterSubjects: filters})
		return err
	}
}
