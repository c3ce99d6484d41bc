package deploy

import (
	"context"
	"testing"

	"github.com/recoverpasscode/recoverpasscode/console"
)

// TestConsolePermissionsAreNATSPermissions proves that the console user
// of accounts.conf is allowed and denied exactly what
// console.NATSPermissions lists, in every server config. The console's own
// tests run it on a server that grants it those alone, so a permission
// the console gains must be added to both.
func TestConsolePermissionsAreNATSPermissions(t *testing.T) {
	setPasswords(t)
	grantsExactly(t, "console", "console.NATSPermissions", console.NATSPermissions("", inboxPrefix("console")))
}

// consoleDenials lists what the console's user must not be able to do,
// although it reads the DLQ and the audit stream, publishes audit events,
// replays jobs and writes pauses: forge what only the worker publishes,
// answer or read another's inbox, take or acknowledge jobs, touch the
// workers' consumer but to inspect it, write the limits bucket outside
// its pauses and held records, use the idempotency bucket, or change or
// delete any stream, bucket or stored message.
func consoleDenials(c *peer) []denial {
	const dev = "0f6a7a2c-3d1e-4a6b-9c1d-2b7e8f9a0b1c"
	return []denial{
		{name: "console publishes a result", who: c, kind: "publish",
			subject: "recoverpasscode.results.ticketing.x", do: publish("recoverpasscode.results.ticketing.x")},
		{name: "console forges a dead letter", who: c, kind: "publish",
			subject: "recoverpasscode.dlq.ticketing", do: publish("recoverpasscode.dlq.ticketing")},
		{name: "console answers into ticketing's inbox", who: c, kind: "publish",
			subject: "_INBOX.ticketing.x", do: publish("_INBOX.ticketing.x")},
		{name: "console answers into its own inbox", who: c, kind: "publish",
			subject: "_INBOX.console.x", do: publish("_INBOX.console.x")},
		{name: "console subscribes to the gateway's inboxes", who: c, kind: "subscription",
			subject: "_INBOX.gateway.>", do: subscribe("_INBOX.gateway.>")},
		{name: "console subscribes to every inbox", who: c, kind: "subscription",
			subject: "_INBOX.>", do: subscribe("_INBOX.>")},
		{name: "console submits on a subject that is not a source's", who: c, kind: "publish",
			subject: "recoverpasscode.jobs.ticketing.extra", do: publish("recoverpasscode.jobs.ticketing.extra")},
		{name: "console subscribes to every audit event", who: c, kind: "subscription",
			subject: "recoverpasscode.audit.>", do: subscribe("recoverpasscode.audit.>")},

		// Jobs are the workers'.
		{name: "console pulls jobs from the worker consumer", who: c, kind: "publish",
			subject: "$JS.API.CONSUMER.MSG.NEXT." + jobsStream + "." + consumerName,
			do:      request("$JS.API.CONSUMER.MSG.NEXT."+jobsStream+"."+consumerName, `{"batch":1}`)},
		{name: "console acknowledges a job", who: c, kind: "publish",
			subject: "$JS.ACK." + jobsStream + ".worker.1.1.1.1.0", do: publish("$JS.ACK." + jobsStream + ".worker.1.1.1.1.0")},
		{name: "console deletes the worker consumer", who: c, kind: "publish",
			subject: "$JS.API.CONSUMER.DELETE." + jobsStream + "." + consumerName,
			do:      func(ctx context.Context, p *peer) error { return p.js.DeleteConsumer(ctx, jobsStream, consumerName) }},
		{name: "console reads jobs through a consumer", who: c, kind: "publish",
			subject: "$JS.API.CONSUMER.CREATE." + jobsStream + ".*.recoverpasscode.jobs.>",
			do:      orderedOn(jobsStream, "recoverpasscode.jobs.>")},
		{name: "console deletes a queued job", who: c, kind: "publish",
			subject: "$JS.API.STREAM.MSG.DELETE." + jobsStream, do: request("$JS.API.STREAM.MSG.DELETE."+jobsStream, `{"seq":1}`)},

		// The limits bucket: pauses and held records only.
		{name: "console writes a rate-limit window", who: c, kind: "publish",
			subject: "$KV." + limitsBucket + ".window.app." + dev, do: publish("$KV." + limitsBucket + ".window.app." + dev)},
		{name: "console writes a learned budget", who: c, kind: "publish",
			subject: "$KV." + limitsBucket + ".budget.app." + dev, do: publish("$KV." + limitsBucket + ".budget.app." + dev)},
		{name: "console admits a job over a source's budget", who: c, kind: "publish",
			subject: "$KV." + limitsBucket + ".admitted.automation.x", do: publish("$KV." + limitsBucket + ".admitted.automation.x")},
		{name: "console purges the limits bucket", who: c, kind: "publish",
			subject: "$JS.API.STREAM.PURGE.KV_" + limitsBucket, do: request("$JS.API.STREAM.PURGE.KV_"+limitsBucket, `{}`)},
		{name: "console opens the idempotency bucket", who: c, kind: "publish",
			subject: "$JS.API.STREAM.INFO.KV_" + keysBucket,
			do:      func(ctx context.Context, p *peer) error { _, err := p.js.KeyValue(ctx, keysBucket); return err }},
		{name: "console writes an idempotency record", who: c, kind: "publish",
			subject: "$KV." + keysBucket + ".key", do: publish("$KV." + keysBucket + ".key")},

		// Streams and stored messages stay as they are.
		{name: "console deletes a dead letter", who: c, kind: "publish",
			subject: "$JS.API.STREAM.MSG.DELETE." + dlqStream, do: request("$JS.API.STREAM.MSG.DELETE."+dlqStream, `{"seq":1}`)},
		{name: "console purges the DLQ", who: c, kind: "publish",
			subject: "$JS.API.STREAM.PURGE." + dlqStream, do: request("$JS.API.STREAM.PURGE."+dlqStream, `{}`)},
		{name: "console purges the audit stream", who: c, kind: "publish",
			subject: "$JS.API.STREAM.PURGE." + auditStream, do: request("$JS.API.STREAM.PURGE."+auditStream, `{}`)},
		{name: "console deletes the audit stream", who: c, kind: "publish",
			subject: "$JS.API.STREAM.DELETE." + auditStream,
			do:      func(ctx context.Context, p *peer) error { return p.js.DeleteStream(ctx, auditStream) }},
		{name: "console changes the DLQ", who: c, kind: "publish",
			subject: "$JS.API.STREAM.UPDATE." + dlqStream,
			do:      request("$JS.API.STREAM.UPDATE."+dlqStream, `{"name":"`+dlqStream+`"}`)},
		{name: "console lists the account's streams", who: c, kind: "publish",
			subject: "$JS.API.STREAM.NAMES", do: request("$JS.API.STREAM.NAMES", `{}`)},
	}
}
