package deploy

import (
	"context"

	"github.com/nats-io/nats.go/jetstream"
)

// denials lists what each user must not be able to do, with the subject the
// server must refuse for it.
func denials(worker *peer, src map[string]*peer) []denial {
	ticketing := src["ticketing"]
	return []denial{
		// Submitting only on one's own subject.
		{name: "ticketing submits as batch", who: ticketing, kind: "publish",
			subject: "recoverpasscode.jobs.batch", do: publish("recoverpasscode.jobs.batch")},
		{name: "batch submits as automation", who: src["batch"], kind: "publish",
			subject: "recoverpasscode.jobs.automation", do: publish("recoverpasscode.jobs.automation")},
		{name: "automation submits as ticketing", who: src["automation"], kind: "publish",
			subject: "recoverpasscode.jobs.ticketing", do: publish("recoverpasscode.jobs.ticketing")},
		{name: "worker submits a job", who: worker, kind: "publish",
			subject: "recoverpasscode.jobs.ticketing", do: publish("recoverpasscode.jobs.ticketing")},

		// Reading only one's own results, by subscription.
		{name: "ticketing subscribes to a batch result", who: ticketing, kind: "subscription",
			subject: "recoverpasscode.results.batch.x", do: subscribe("recoverpasscode.results.batch.x")},
		{name: "ticketing subscribes to every result", who: ticketing, kind: "subscription",
			subject: "recoverpasscode.results.>", do: subscribe("recoverpasscode.results.>")},
		{name: "ticketing subscribes to jobs", who: ticketing, kind: "subscription",
			subject: "recoverpasscode.jobs.>", do: subscribe("recoverpasscode.jobs.>")},
		{name: "worker subscribes to jobs outside its consumer", who: worker, kind: "subscription",
			subject: "recoverpasscode.jobs.>", do: subscribe("recoverpasscode.jobs.>")},

		// Reading only one's own results, through JetStream.
		{name: "ticketing reads batch results through a consumer", who: ticketing, kind: "publish",
			subject: "$JS.API.CONSUMER.CREATE." + resultsStream + ".*.recoverpasscode.results.batch.>",
			do:      readResults("recoverpasscode.results.batch.>")},
		{name: "batch reads ticketing results through a consumer", who: src["batch"], kind: "publish",
			subject: "$JS.API.CONSUMER.CREATE." + resultsStream + ".*.recoverpasscode.results.ticketing.>",
			do:      readResults("recoverpasscode.results.ticketing.>")},
		{name: "ticketing reads every result through an unfiltered consumer", who: ticketing, kind: "publish",
			subject: "$JS.API.CONSUMER.CREATE." + resultsStream + ".*",
			do:      readResults()},
		{name: "ticketing reads its own and batch results through one consumer", who: ticketing, kind: "publish",
			subject: "$JS.API.CONSUMER.CREATE." + resultsStream + ".*",
			do:      readResults("recoverpasscode.results.ticketing.>", "recoverpasscode.results.batch.>")},
		{name: "worker reads results through a consumer", who: worker, kind: "publish",
			subject: "$JS.API.CONSUMER.CREATE." + resultsStream + ".*.recoverpasscode.results.ticketing.>",
			do:      readResults("recoverpasscode.results.ticketing.>")},

		// Confirmations of followed jobs: only the worker stores them, and
		// a source reads only its own.
		{name: "ticketing forges a confirmation", who: ticketing, kind: "publish",
			subject: "recoverpasscode.confirmations.ticketing.x", do: publish("recoverpasscode.confirmations.ticketing.x")},
		{name: "ticketing subscribes to a batch confirmation", who: ticketing, kind: "subscription",
			subject: "recoverpasscode.confirmations.batch.x", do: subscribe("recoverpasscode.confirmations.batch.x")},
		{name: "ticketing reads batch confirmations through a consumer", who: ticketing, kind: "publish",
			subject: "$JS.API.CONSUMER.CREATE." + confirmationsStream + ".*.recoverpasscode.confirmations.batch.>",
			do: func(ctx context.Context, p *peer) error {
				_, err := p.js.OrderedConsumer(ctx, confirmationsStream, jetstream.OrderedConsumerConfig{FilterSubjects: []string{"recoverpasscode.confirmations.batch.>"}})
				return err
			}},
		{name: "ticketing stores a follow record", who: ticketing, kind: "publish",
			subject: "recoverpasscode.follows.ticketing.x", do: publish("recoverpasscode.follows.ticketing.x")},
		{name: "ticketing pulls from the follower consumer", who: ticketing, kind: "publish",
			subject: "$JS.API.CONSUMER.MSG.NEXT." + followsStream + ".follower",
			do:      request("$JS.API.CONSUMER.MSG.NEXT."+followsStream+".follower", `{"batch":1}`)},
		{name: "worker deletes the follows stream", who: worker, kind: "publish",
			subject: "$JS.API.STREAM.DELETE." + followsStream,
			do:      func(ctx context.Context, p *peer) error { return p.js.DeleteStream(ctx, followsStream) }},

		// Leaving the worker's objects alone.
		{name: "ticketing pulls jobs from the worker consumer", who: ticketing, kind: "publish",
			subject: "$JS.API.CONSUMER.MSG.NEXT." + jobsStream + "." + consumerName,
			do:      request("$JS.API.CONSUMER.MSG.NEXT."+jobsStream+"."+consumerName, `{"batch":1}`)},
		{name: "ticketing opens the idempotency bucket", who: ticketing, kind: "publish",
			subject: "$JS.API.STREAM.INFO.KV_" + keysBucket,
			do:      func(ctx context.Context, p *peer) error { _, err := p.js.KeyValue(ctx, keysBucket); return err }},
		{name: "ticketing writes a rate-limit record", who: ticketing, kind: "publish",
			subject: "$KV." + limitsBucket + ".tenant", do: publish("$KV." + limitsBucket + ".tenant")},
		{name: "ticketing inspects the audit stream", who: ticketing, kind: "publish",
			subject: "$JS.API.STREAM.INFO." + auditStream,
			do:      func(ctx context.Context, p *peer) error { _, err := p.js.Stream(ctx, auditStream); return err }},
		{name: "ticketing declares a stream", who: ticketing, kind: "publish",
			subject: "$JS.API.STREAM.CREATE.SNOOP",
			do: func(ctx context.Context, p *peer) error {
				_, err := p.js.CreateStream(ctx, jetstream.StreamConfig{Name: "SNOOP", Subjects: []string{"snoop.>"}})
				return err
			}},

		// The worker keeps to creating, updating and using.
		{name: "worker deletes the jobs stream", who: worker, kind: "publish",
			subject: "$JS.API.STREAM.DELETE." + jobsStream,
			do:      func(ctx context.Context, p *peer) error { return p.js.DeleteStream(ctx, jobsStream) }},
		{name: "worker purges the jobs stream", who: worker, kind: "publish",
			subject: "$JS.API.STREAM.PURGE." + jobsStream,
			do: func(ctx context.Context, p *peer) error {
				s, err := p.js.Stream(ctx, jobsStream)
				if err != nil {
					return err
				}
				return s.Purge(ctx)
			}},
		{name: "worker deletes its consumer", who: worker, kind: "publish",
			subject: "$JS.API.CONSUMER.DELETE." + jobsStream + "." + consumerName,
			do: func(ctx context.Context, p *peer) error {
				return p.js.DeleteConsumer(ctx, jobsStream, consumerName)
			}},
		{name: "worker creates a second consumer on the jobs stream", who: worker, kind: "publish",
			subject: "$JS.API.CONSUMER.CREATE." + jobsStream + ".rogue",
			do: func(ctx context.Context, p *peer) error {
				_, err := p.js.CreateOrUpdateConsumer(ctx, jobsStream, jetstream.ConsumerConfig{Durable: "rogue"})
				return err
			}},
	}
}

// The streams of follow-through.
const (
	followsStream       = "RECOVERPASSCODE_FOLLOWS"
	confirmationsStream = "RECOVERPASSCODE_CONFIRMATIONS"
)

// request is a denial action: a raw request that the server must refuse.
func request(subject, body string) func(context.Context, *peer) error {
	return func(ctx context.Context, p *peer) error {
		_, err := p.nc.RequestWithContext(ctx, subject, []byte(body))
		return err
	}
}
