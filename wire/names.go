package wire

import (
	"strings"
)

// DefaultPrefix is the first token of every subject and the base of every
// stream and bucket name.
const DefaultPrefix = "recoverpasscode"

// Names derives every subject, stream and bucket name from one prefix. The
// zero value uses DefaultPrefix.
type Names struct {
	// Prefix is a single subject token. Defaults to "recoverpasscode".
	Prefix string
}

// Owns reports whether subject is the prefix itself or under it: a subject
// of this service, which no job may choose freely.
func (n Names) Owns(subject string) bool {
	p := n.prefix()
	return subject == p || strings.HasPrefix(subject, p+".")
}

// IsResultOf reports whether subject is a result subject of source.
func (n Names) IsResultOf(subject, source string) bool {
	return strings.HasPrefix(subject, n.Result(source, ""))
}

func (n Names) prefix() string {
	if n.Prefix == "" {
		return DefaultPrefix
	}
	return n.Prefix
}

func (n Names) stream(what string) string {
	return strings.ToUpper(n.prefix()) + "_" + what
}

// JobsStream is the work-queue stream of jobs.
func (n Names) JobsStream() string { return n.stream("JOBS") }

// ResultsStream stores every result.
func (n Names) ResultsStream() string { return n.stream("RESULTS") }

// DLQStream stores jobs that could not be processed, with the reason.
func (n Names) DLQStream() string { return n.stream("DLQ") }

// AuditStream stores one event per Graph call and per terminal decision.
func (n Names) AuditStream() string { return n.stream("AUDIT") }

// KeysBucket holds the idempotency records.
func (n Names) KeysBucket() string { return n.prefix() + "_keys" }

// LimitsBucket holds the shared rate-limit state and pauses.
func (n Names) LimitsBucket() string { return n.prefix() + "_limits" }

// RequestsBucket holds the HTTP gateway's request records: one per job
// submitted over HTTP, so that a retried request finds its job.
func (n Names) RequestsBucket() string { return n.prefix() + "_requests" }

// Jobs is the subject a source publishes its jobs to.
func (n Names) Jobs(source string) string { return n.prefix() + ".jobs." + source }

// JobsWildcard matches the jobs of every source.
func (n Names) JobsWildcard() string { return n.prefix() + ".jobs.*" }

// Result is the default reply subject of a job.
func (n Names) Result(source, jobID string) string {
	return n.prefix() + ".results." + source + "." + jobID
}

// ResultsWildcard matches every stored result.
func (n Names) ResultsWildcard() string { return n.prefix() + ".results.>" }

// IsResult reports whether subject is stored by the results stream.
func (n Names) IsResult(subject string) bool {
	return strings.HasPrefix(subject, n.prefix()+".results.")
}

// DLQ is the dead-letter subject of a source.
func (n Names) DLQ(source string) string { return n.prefix() + ".dlq." + source }

// DLQWildcard matches every dead letter.
func (n Names) DLQWildcard() string { return n.prefix() + ".dlq.>" }

// NoToken stands in an audit subject for a tenant or device id that the
// event lacks or that is not a GUID: only validated ids become tokens.
const NoToken = "_"

// Audit is the subject of an audit event of source about one device of one
// tenant: <prefix>.audit.<source>.<tenantId>.<managedDeviceId>, so that a
// device's history is read by subject (AuditOfDevice) rather than by
// scanning the stream. The ids pass through AuditToken; a source that is
// not a token (ValidToken) becomes NoToken.
func (n Names) Audit(source, tenantID, deviceID string) string {
	if !ValidToken(source) {
		source = NoToken
	}
	return n.prefix() + ".audit." + source + "." + AuditToken(tenantID) + "." + AuditToken(deviceID)
}

// AuditOfDevice matches every audit event about one device of one tenant,
// from every source. Callers validate both ids first (IsGUID): an invalid
// one becomes NoToken, which matches the events that lack it.
func (n Names) AuditOfDevice(tenantID, deviceID string) string {
	return n.prefix() + ".audit.*." + AuditToken(tenantID) + "." + AuditToken(deviceID)
}

// AuditToken is id as a token of an audit subject: a GUID in lower case
// (Graph's ids are case-insensitive, so both spellings of one device share
// a subject), anything else NoToken.
func AuditToken(id string) string {
	if !IsGUID(id) {
		return NoToken
	}
	return strings.ToLower(id)
}

// AuditWildcard matches every audit event.
func (n Names) AuditWildcard() string { return n.prefix() + ".audit.>" }

// DeliveriesBucket holds the write-back's failed deliveries, each kept with
// its reason until it is redelivered, and the endpoints it has disabled.
func (n Names) DeliveriesBucket() string { return n.prefix() + "_deliveries" }

// ResultsOf matches every stored result of source, batch results included.
func (n Names) ResultsOf(source string) string {
	return n.prefix() + ".results." + source + ".>"
}

// SourceOf returns the source token of a job subject, or "" when subject
// is not a jobs subject of one token.
func (n Names) SourceOf(subject string) string {
	rest, ok := strings.CutPrefix(subject, n.prefix()+".jobs.")
	if !ok || rest == "" || strings.Contains(rest, ".") {
		return ""
	}
	return rest
}

// ValidToken reports whether s can be one subject token such as a source
// name: letters, digits, '-' and '_'.
func ValidToken(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, r := range s {
		ok := r == '-' || r == '_' || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9')
		if !ok {
			return false
		}
	}
	return true
}
