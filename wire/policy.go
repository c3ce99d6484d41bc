package wire

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Policy is what a worker allows jobs to ask for.
type Policy struct {
	// DefaultTenant is used when a job names no tenant (AZURE_TENANT_ID).
	DefaultTenant string
	// Tenants lists the tenants jobs may target (RECOVER_TENANTS). Empty
	// allows only DefaultTenant.
	Tenants []string
	// Names are the service's subjects (RECOVER_PREFIX). Under their
	// prefix, a job may name only its own source's results as replyTo: a
	// result on another source's subject would be read as theirs, and one
	// on a jobs, DLQ or audit subject would forge an entry. The zero value
	// uses DefaultPrefix.
	Names Names
	// InboxPerSource lets a job name a reply subject under "_INBOX." only
	// under its own source's "_INBOX.<source>." [RECOVER_INBOX_PER_SOURCE]:
	// where each NATS user may read only the inboxes under its own name
	// (deploy/nats/accounts.conf, whose users are named for their
	// sources), a job from one source could otherwise have the worker
	// publish a forged reply into another user's inbox. Off by default, so
	// that clients with nats.go's plain "_INBOX." inboxes keep working.
	InboxPerSource bool
}

// inboxRoot heads every inbox of nats.go clients, with or without a
// per-user prefix such as "_INBOX.ticketing".
const inboxRoot = "_INBOX."

// CheckReplyTo refuses a reply subject under the service's prefix other
// than the job's own source's results and, with InboxPerSource, an inbox
// other than the source's own.
func (p Policy) CheckReplyTo(replyTo, source string) error {
	if p.Names.Owns(replyTo) && !p.Names.IsResultOf(replyTo, source) {
		return fmt.Errorf("replyTo: %q is a %s subject other than this source's results; use a subject under %s, or an inbox", Truncate(replyTo, 64), p.Names.prefix(), p.Names.Result(source, ""))
	}
	if p.InboxPerSource && strings.HasPrefix(replyTo, inboxRoot) {
		own := inboxRoot + source + "."
		if !strings.HasPrefix(replyTo, own) {
			return fmt.Errorf("replyTo: %q is an inbox other than source %s's own; this worker answers only inboxes under %s (RECOVER_INBOX_PER_SOURCE), which its client creates with the inbox prefix %s%s", Truncate(replyTo, 64), source, own, inboxRoot, source)
		}
	}
	return nil
}

func (p Policy) allows(tenant string) bool {
	if len(p.Tenants) == 0 {
		return strings.EqualFold(tenant, p.DefaultTenant)
	}
	for _, t := range p.Tenants {
		if strings.EqualFold(t, tenant) {
			return true
		}
	}
	return false
}

// Validate checks every field of a decoded job and fills TenantID from the
// policy's default. Its error says exactly what is wrong, for a person.
func (p Policy) Validate(j *Job) error {
	if !ValidID(j.ID) {
		return fmt.Errorf("id: %q is not usable as a job id: use 1 to 128 letters, digits, '-' or '_'", Truncate(j.ID, 64))
	}
	if err := checkKey(j.IdempotencyKey); err != nil {
		return err
	}
	if err := checkText("requestedBy", j.RequestedBy, 256); err != nil {
		return err
	}
	if err := checkText("ticket", j.Ticket, 128); err != nil {
		return err
	}
	if j.ReplyTo != "" && !ValidSubject(j.ReplyTo) {
		return fmt.Errorf("replyTo: %q is not a NATS subject a result can be published to (no spaces, wildcards or empty tokens, at most 256 bytes)", Truncate(j.ReplyTo, 64))
	}
	if j.TenantID == "" {
		j.TenantID = p.DefaultTenant
	}
	if err := j.ValidateDevice(); err != nil {
		return err
	}
	if !p.allows(j.TenantID) {
		return fmt.Errorf("tenantId: tenant %s is not one this worker may act on (RECOVER_TENANTS)", j.TenantID)
	}
	return nil
}

// ValidID reports whether s can be a job id: it becomes a subject token and
// part of a Nats-Msg-Id.
func ValidID(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for _, r := range s {
		if !(r < utf8.RuneSelf && (r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r))) {
			return false
		}
	}
	return true
}

// checkText refuses control characters (they would forge log lines and
// headers) and overlong values in free-text fields.
func checkText(field, s string, max int) error {
	if len(s) > max {
		return fmt.Errorf("%s: %d bytes, more than the %d allowed", field, len(s), max)
	}
	for _, r := range s {
		if unicode.IsControl(r) || r == '\u2028' || r == '\u2029' {
			return fmt.Errorf("%s: contains the control character %U", field, r)
		}
	}
	return nil
}

// MaxKeySize is the longest idempotency key a job may carry, in bytes.
const MaxKeySize = 256

// checkKey holds idempotency keys to what the idempotency store accepts
// once the tenant is put in front: printable text of at most MaxKeySize
// bytes.
func checkKey(key string) error {
	if len(key) > MaxKeySize {
		return fmt.Errorf("idempotencyKey: %d bytes, more than the %d allowed", len(key), MaxKeySize)
	}
	for _, r := range key {
		if !unicode.IsPrint(r) && r != ' ' {
			return fmt.Errorf("idempotencyKey: contains the non-printable character %U", r)
		}
	}
	return nil
}

// ValidSubject reports whether s is a literal NATS subject: dot-separated,
// non-empty tokens with no whitespace or wildcards.
func ValidSubject(s string) bool {
	if s == "" || len(s) > 256 {
		return false
	}
	for _, tok := range strings.Split(s, ".") {
		if tok == "" || tok == "*" || tok == ">" {
			return false
		}
		for _, r := range tok {
			if r <= ' ' || r == 0x7f || unicode.IsSpace(r) || unicode.IsControl(r) {
				return false
			}
		}
	}
	return true
}

// lookupPlaceholder stands in for the managed device id of a job that names
// its device by a Lookup, so that the rest of its Target is validated
// before the device is resolved.
const lookupPlaceholder = "00000000-0000-0000-0000-000000000000"

// ValidateDevice checks that j names its device exactly one way
// (managedDeviceId, azureADDeviceId or serialNumber) and that every
// identifier of its target is valid: the part of Policy.Validate a
// submitter can check before it publishes.
func (j *Job) ValidateDevice() error {
	named := 0
	for _, v := range []string{j.ManagedDeviceID, j.AzureADDeviceID, j.SerialNumber} {
		if v != "" {
			named++
		}
	}
	if named > 1 {
		return &FieldError{Field: "managedDeviceId", Reason: "name the device exactly one way: managedDeviceId, azureADDeviceId or serialNumber, not several"}
	}
	l, ok := j.Lookup()
	if !ok {
		if j.ManagedDeviceID == "" {
			return fieldError("managedDeviceId", "", "is required (or name the device by azureADDeviceId or serialNumber)")
		}
		return j.Target().Validate()
	}
	if err := l.Validate(); err != nil {
		return err
	}
	t := j.Target()
	t.ManagedDeviceID = lookupPlaceholder
	return t.Validate()
}
