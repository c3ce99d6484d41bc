package console

import (
	"slices"

	"github.com/recoverpasscode/recoverpasscode/gateway"
	"github.com/recoverpasscode/recoverpasscode/history"
	"github.com/recoverpasscode/recoverpasscode/queue"
	"github.com/recoverpasscode/recoverpasscode/wire"
)

// NATSPermissions returns the permissions of the NATS user of a gateway
// that serves the console (user "console" in deploy/nats/accounts.conf),
// for the subject prefix (RECOVER_PREFIX; "" is the default) and the inbox
// prefix of its connection (NATS_INBOX_PREFIX, e.g. "_INBOX.console"): the
// gateway's own (gateway.NATSPermissions, since the console runs in the
// gateway's process, on its connection) with the console's added, each
// subject once. A gateway without the console keeps its narrower user.
//
// What the console adds, subject by subject (see Permissions for the
// subjects themselves):
//
//   - <prefix>.audit.>: every operator action (replay, release, pause,
//     resume) is an audit event naming the person, published on the audit
//     subject of the job's source, tenant and device, so a device's history
//     holds it. The gateway's deny of the audit subjects is therefore
//     dropped; the console can write an audit event of any source, the
//     price of an audit trail that holds the operators' actions.
//   - <prefix>.jobs.* (already the gateway's): a replayed dead letter is
//     submitted again on its source's jobs subject.
//   - STREAM.INFO of the jobs and DLQ streams (the results stream's is the
//     gateway's): the overview's counts and the DLQ's size; a batch page's
//     bounds in the jobs stream.
//   - CONSUMER.INFO of the workers' durable consumer: jobs in flight and
//     waiting.
//   - STREAM.MSG.GET of the jobs stream: a batch page counts the batch's
//     queued jobs by subject (the work queue allows no second consumer).
//   - CONSUMER.CREATE (filtered to <prefix>.dlq.> and <prefix>.audit.>),
//     MSG.NEXT and DELETE of consumers of its own on the DLQ and audit
//     streams: the DLQ page (an ordered consumer, which deletes its
//     previous incarnation when it restarts), and a job's Graph attempts
//     when the history index cannot answer (a console without
//     Config.History, a result without a tenant); the results are read
//     with the gateway's permissions. Reading the audit stream grants
//     nothing the direct gets below do not.
//   - DIRECT.GET of the audit stream (history.Permissions): a device's
//     history, by subject. It takes no filter in its subject, so the
//     console can read any audit event, which its readers see anyway.
//   - The limits bucket (KV_<prefix>_limits): looked up, read (direct
//     gets, and watchers and ordered consumers over its keys, with their
//     flow control), the learned budgets, windows and pauses on the
//     overview and the held jobs; written only under pause.> (a tenant's
//     pause and resume) and held.> (a held job released).
//
// Denied still: publishing results and dead letters, and into any inbox
// (the gateway's denials but the audit subjects'), so that a broader allow
// added later cannot let the console forge a result or a reply; it cannot
// create, change, delete or purge a stream or a bucket, touch the
// workers' consumer but to inspect it, use the idempotency bucket, write
// the limits bucket's windows, budgets or admissions, or read any inbox
// but its own.
func NATSPermissions(prefix, inboxPrefix string) gateway.Permissions {
	gw := gateway.NATSPermissions(prefix, inboxPrefix)
	own := Permissions(prefix)
	return gateway.Permissions{
		Publish:   union(gw.Publish, own.Publish),
		Subscribe: gw.Subscribe,
		DenyPublish: slices.DeleteFunc(slices.Clone(gw.DenyPublish), func(s string) bool {
			return slices.Contains(own.Publish, s)
		}),
	}
}

// Permissions are the subjects the console itself publishes to, beyond
// the gateway's (NATSPermissions explains each); its replies arrive on the
// gateway's inboxes.
func Permissions(prefix string) gateway.Permissions {
	n := wire.Names{Prefix: prefix}
	const api = "$JS.API."
	jobs, dlq, audit := n.JobsStream(), n.DLQStream(), n.AuditStream()
	limits := n.LimitsBucket()
	kvStream, kvSubjects := "KV_"+limits, "$KV."+limits
	return gateway.Permissions{
		Publish: slices.Concat([]string{
			// Operator actions as audit events; replays as jobs.
			n.AuditWildcard(),
			n.JobsWildcard(),

			// The overview's counts and the DLQ's size.
			api + "STREAM.INFO." + jobs,
			api + "STREAM.INFO." + dlq,
			api + "CONSUMER.INFO." + jobs + "." + queue.ConsumerName,

			// A batch's queued jobs, by subject.
			api + "STREAM.MSG.GET." + jobs,

			// The DLQ page and a job's Graph attempts: consumers of its own,
			// filtered.
			api + "CONSUMER.CREATE." + dlq + ".*." + n.DLQWildcard(),
			api + "CONSUMER.MSG.NEXT." + dlq + ".*",
			api + "CONSUMER.DELETE." + dlq + ".*",
			api + "CONSUMER.CREATE." + audit + ".*." + n.AuditWildcard(),
			api + "CONSUMER.MSG.NEXT." + audit + ".*",
			api + "CONSUMER.DELETE." + audit + ".*",
		},
			// A device's history.
			history.Permissions(n),
			[]string{
				// The limits bucket: read all, write pauses and held records.
				api + "STREAM.INFO." + kvStream,
				api + "DIRECT.GET." + kvStream + "." + kvSubjects + ".>",
				api + "CONSUMER.CREATE." + kvStream + ".*",
				api + "CONSUMER.CREATE." + kvStream + ".*." + kvSubjects + ".>",
				api + "CONSUMER.MSG.NEXT." + kvStream + ".*",
				api + "CONSUMER.DELETE." + kvStream + ".*",
				"$JS.FC." + kvStream + ".>",
				"$JS.FC.*.*." + kvStream + ".>",
				kvSubjects + ".pause.>",
				kvSubjects + ".held.>",
			}),
	}
}

// union is a followed by the subjects of b it lacks.
func union(a, b []string) []string {
	out := slices.Clone(a)
	for _, s := range b {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}
