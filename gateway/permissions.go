package gateway

import (
	"strings"

	"github.com/recoverpasscode/recoverpasscode/wire"
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
// "" is nats.go's "_INBOX", which any user may then read).
func NATSPermissions(prefix, inboxPrefix string) Permissions {
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
	results := n.ResultsStream()
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
