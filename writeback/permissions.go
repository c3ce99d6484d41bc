package writeback

import (
	"strings"

	"github.com/recoverpasscode/recoverpasscode/wire"
)

// Permissions are the subjects a NATS user must be allowed, and those it
// is denied, for a part of write-back to work: the least privilege of its
// user (the package documentation explains each).
type Permissions struct {
	// Publish and Subscribe are the subjects to allow.
	Publish, Subscribe []string
	// DenyPublish are subjects to deny explicitly, so that a broader allow
	// added later cannot let the deliverer forge a result, a dead letter
	// or an audit event.
	DenyPublish []string
}

// NATSPermissions returns the permissions the Deliverer's NATS user needs
// (the gateway's, which runs it) for the subject prefix (RECOVER_PREFIX;
// "" is the default) and the inbox prefix its connection uses
// (NATS_INBOX_PREFIX, e.g. "_INBOX.gateway"; "" is nats.go's "_INBOX").
func NATSPermissions(prefix, inboxPrefix string) Permissions {
	n := wire.Names{Prefix: prefix}
	results := n.ResultsStream()
	p := Permissions{
		Publish: []string{
			// Each endpoint's durable consumer on its source's results:
			// created (the filter is part of the subject), read, pulled,
			// acknowledged; the results a redelivery reads again and the
			// oldest undelivered one.
			"$JS.API.STREAM.INFO." + results,
			"$JS.API.CONSUMER.CREATE." + results + ".*." + n.ResultsWildcard(),
			"$JS.API.CONSUMER.INFO." + results + ".*",
			"$JS.API.CONSUMER.MSG.NEXT." + results + ".*",
			"$JS.ACK." + results + ".>",
			"$JS.ACK.*.*." + results + ".>",
			"$JS.API.STREAM.MSG.GET." + results,
		},
		Subscribe:   []string{inbox(inboxPrefix)},
		DenyPublish: []string{n.ResultsWildcard(), n.DLQWildcard(), n.AuditWildcard(), n.ConfirmationsWildcard()},
	}
	// Each webhook's durable consumer on its source's confirmations.
	confirmations := n.ConfirmationsStream()
	p.Publish = append(p.Publish,
		"$JS.API.STREAM.INFO."+confirmations,
		"$JS.API.CONSUMER.CREATE."+confirmations+".*."+n.ConfirmationsWildcard(),
		"$JS.API.CONSUMER.INFO."+confirmations+".*",
		"$JS.API.CONSUMER.MSG.NEXT."+confirmations+".*",
		// A redelivery reads the confirmation again by sequence.
		"$JS.API.STREAM.MSG.GET."+confirmations,
		"$JS.ACK."+confirmations+".>",
		"$JS.ACK.*.*."+confirmations+".>",
	)
	// The deliveries bucket: failures kept and resolved, endpoints
	// disabled, each endpoint's durable consumer of redelivery requests,
	// and the watchers of its state and of its failures (for the metric).
	p.Publish = append(p.Publish, bucketPermissions(n)...)
	p.Publish = append(p.Publish,
		"$JS.API.CONSUMER.MSG.NEXT."+kvStream(n.DeliveriesBucket())+".*",
		"$JS.ACK."+kvStream(n.DeliveriesBucket())+".>",
		"$JS.ACK.*.*."+kvStream(n.DeliveriesBucket())+".>",
	)
	return p
}

// OperatorPermissions returns what the NATS user of a person running
// `enqueue deliveries list|redeliver` needs, for the subject and inbox
// prefixes as NATSPermissions.
func OperatorPermissions(prefix, inboxPrefix string) Permissions {
	return Permissions{
		Publish:   bucketPermissions(wire.Names{Prefix: prefix}),
		Subscribe: []string{inbox(inboxPrefix)},
	}
}

// bucketPermissions read, write and watch the deliveries bucket.
func bucketPermissions(n wire.Names) []string {
	bucket := n.DeliveriesBucket()
	stream := kvStream(bucket)
	return []string{
		"$KV." + bucket + ".>",
		"$JS.API.STREAM.INFO." + stream,
		"$JS.API.DIRECT.GET." + stream + ".>",
		"$JS.API.CONSUMER.CREATE." + stream + ".*.$KV." + bucket + ".>",
		"$JS.API.CONSUMER.DELETE." + stream + ".*",
		"$JS.FC." + stream + ".>",
		"$JS.FC.*.*." + stream + ".>",
	}
}

func inbox(prefix string) string {
	if prefix == "" {
		prefix = "_INBOX"
	}
	return strings.TrimSuffix(prefix, ".") + ".>"
}
