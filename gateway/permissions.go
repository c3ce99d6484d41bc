package gateway

import (
	"slices"
	"strings"

	"github.com/recoverpasscode/recoverpasscode/wire"
	"github.com/recoverpasscode/recoverpasscode/writeback"
)

// Permissions are the subjects a NATS user must be allowed for the gateway
// to work, and those it must never be: the least privilege of the
// gateway's user (the package documentation explains each).
type Permissions struct {
	// Publish and Subscribe are the subjects to allow.
	Publish, Subscribe []string
	// DenyPublish are subjects to deny explicitly, so that a broader allow
	// added later cannot let the gateway forge a result, a dead letter, an
	// audit event or a reply into another user's inbox.
	DenyPublish []string
}

// NATSPermissions returns the permissions of the gateway's NATS user for
// the subject prefix (RECOVER_PREFIX; "" is the default) and the inbox
// prefix its connection uses (NATS_INBOX_PREFIX, e.g. "_INBOX.gateway";
// "" is nats.go's "_INBOX", which any user may then read): the HTTP
// door's, and writeback.NATSPermissions for the write-back the gateway
// process runs, each subject once.
func NATSPermissions(prefix, inboxPrefix string) Permissions {
	door := doorPermissions(prefix, inboxPrefix)
	wb := writeback.NATSPermissions(prefix, inboxPrefix)
	return Permissions{
		Publish:     union(door.Publish, wb.Publish),
		Subscribe:   union(door.Subscribe, wb.Subscribe),
		DenyPublish: union(door.DenyPublish, wb.DenyPublish),
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

// doorPermissions are the HTTP door's own: jobs in, results, confirmations
// and request records read, and the source budgets and held records of
// the limits bucket read.
func doorPermissions(prefix, inboxPrefix string) Permissions {
	n := wire.Names{Prefix: prefix}
	p := prefix
	if p == "" {
		p = wire.DefaultPrefix
	}
	if inboxPrefix == "" {
		inboxPrefix = "_INBOX"
	}
	kvStream := "KV_" + n.RequestsBucket()
	kvSubjects := "$KV." + n.RequestsBucket()
	results, confirmations := n.ResultsStream(), n.ConfirmationsStream()
	limitsStream, limitsSubjects := "KV_"+n.LimitsBucket(), "$KV."+n.LimitsBucket()
	return Permissions{
		Publish: []string{
			n.JobsWildcard(),
			kvSubjects + ".>",
			"$JS.API.STREAM.INFO." + kvStream,
			"$JS.API.STREAM.INFO." + results,
			"$JS.API.DIRECT.GET." + kvStream + "." + kvSubjects + ".>",
			"$JS.API.STREAM.MSG.GET." + results,
			"$JS.API.CONSUMER.CREATE." + results + ".*." + p + ".results.>",
			"$JS.API.CONSUMER.MSG.NEXT." + results + ".*",
			"$JS.API.CONSUMER.DELETE." + results + ".*",
			"$JS.API.CONSUMER.CREATE." + kvStream + ".*." + kvSubjects + ".>",
			"$JS.API.CONSUMER.MSG.NEXT." + kvStream + ".*",
			"$JS.API.CONSUMER.DELETE." + kvStream + ".*",
			// A followed job's confirmation, read by subject.
			"$JS.API.STREAM.INFO." + confirmations,
			"$JS.API.STREAM.MSG.GET." + confirmations,
			// The workers' limits bucket, read only: a source's budget
			// window (429 at the door) and a job's held record ("held").
			"$JS.API.STREAM.INFO." + limitsStream,
			"$JS.API.DIRECT.GET." + limitsStream + "." + limitsSubjects + ".quota.>",
			"$JS.API.DIRECT.GET." + limitsStream + "." + limitsSubjects + ".held.>",
		},
		Subscribe: []string{
			p + ".results.*.*",
			strings.TrimSuffix(inboxPrefix, ".") + ".>",
		},
		DenyPublish: []string{
			n.ResultsWildcard(),
			n.DLQWildcard(),
			n.AuditWildcard(),
			"_INBOX.>",
		},
	}
}
