// Package job defines what a recoverPasscode job and its result are, how a
// job is decoded and validated, and the Handler that processes one job: the
// idempotency record, the shared rate limit, the Graph call with backoff, and
// the result.
package job

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/recoverpasscode/recoverpasscode/graph"
)

// MaxSize is the largest job message accepted, in bytes. A real job is a few
// hundred bytes; anything much larger is a mistake or an attack.
const MaxSize = 16 << 10

// Job asks for the passcode of one managed device to be recovered. Its JSON
// names follow Graph's camelCase; unknown fields are an error.
type Job struct {
	// ID identifies the job. Defaults to the message's Nats-Msg-Id header,
	// else to a UUID derived from the message's stream position, so it is the
	// same on every redelivery.
	ID string `json:"id,omitempty"`
	// IdempotencyKey names the action: at most one successful Graph call is
	// made per key. Defaults to ID.
	IdempotencyKey string `json:"idempotencyKey,omitempty"`
	// TenantID is the Entra ID tenant of the device. Defaults to the
	// worker's AZURE_TENANT_ID.
	TenantID string `json:"tenantId,omitempty"`
	// ManagedDeviceID is the Intune managed device. Required.
	ManagedDeviceID string `json:"managedDeviceId"`
	// UserID (a GUID or UPN) selects the /users/{id}/managedDevices form.
	UserID string `json:"userId,omitempty"`
	// DetectedAppID selects the /deviceManagement/detectedApps/{id} form.
	DetectedAppID string `json:"detectedAppId,omitempty"`
	// ReplyTo is where the result goes, in addition to the results stream.
	// Defaults to <prefix>.results.<source>.<id>.
	ReplyTo string `json:"replyTo,omitempty"`
	// RequestedBy names the person or system that asked, for the audit.
	RequestedBy string `json:"requestedBy,omitempty"`
	// Ticket is the ticket the job belongs to, for the audit.
	Ticket string `json:"ticket,omitempty"`
	// NotAfter, when set, is the time after which the job must not be
	// started; it then ends "expired".
	NotAfter *time.Time `json:"notAfter,omitempty"`
}

// Target is the Graph target the job names.
func (j *Job) Target() graph.Target {
	return graph.Target{
		TenantID:        j.TenantID,
		ManagedDeviceID: j.ManagedDeviceID,
		UserID:          j.UserID,
		DetectedAppID:   j.DetectedAppID,
	}
}

// Meta is what the transport knows about a job message.
type Meta struct {
	// Source is the submitting system, the last token of the job subject.
	Source string
	// MsgID is the Nats-Msg-Id header, if any.
	MsgID string
	// Stream and Sequence locate the message; with Timestamp they derive a
	// stable ID for jobs that carry none.
	Stream    string
	Sequence  uint64
	Timestamp time.Time
	// Traceparent is the message's valid W3C traceparent header, if any.
	Traceparent string
}

// DerivedID is the job ID used when neither the job nor its message names
// one: a UUID (version 5) of the message's stream position and store time,
// identical on every redelivery of that message.
func (m Meta) DerivedID() string {
	name := fmt.Sprintf("%s/%d/%d", m.Stream, m.Sequence, m.Timestamp.UnixNano())
	return uuid.NewSHA1(uuid.NameSpaceURL, []byte(name)).String()
}

// Decode parses a job message strictly: size-limited, valid UTF-8, exactly
// one JSON object, no unknown fields. It fills ID and IdempotencyKey from
// their defaults. On error the returned Job still carries a usable ID so the
// rejection can be answered.
func Decode(data []byte, meta Meta) (Job, error) {
	var j Job
	err := decodeStrict(data, &j)
	if err != nil {
		// A broken message may still have a usable id and reply subject;
		// the rejection goes to the defaults only.
		j = Job{}
	}
	if j.ID == "" {
		j.ID = meta.MsgID
	}
	if j.ID == "" || (err != nil && !validID(j.ID)) {
		j.ID = meta.DerivedID()
	}
	if j.IdempotencyKey == "" {
		j.IdempotencyKey = j.ID
	}
	return j, err
}

func decodeStrict(data []byte, j *Job) error {
	if len(data) > MaxSize {
		return fmt.Errorf("job is %d bytes, more than the %d allowed", len(data), MaxSize)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return errors.New("job is empty: want a JSON object with at least managedDeviceId")
	}
	if !utf8.Valid(data) {
		return errors.New("job is not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(j); err != nil {
		return fmt.Errorf("job is not valid JSON: %s", describeJSONError(err))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("job is not valid JSON: data after the object")
	}
	return nil
}

// describeJSONError makes encoding/json's errors name the field in the job's
// terms without echoing large input back.
func describeJSONError(err error) string {
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) {
		if typeErr.Field != "" {
			return fmt.Sprintf("%s: want a %s, got a JSON %s", typeErr.Field, typeErr.Type, typeErr.Value)
		}
		return fmt.Sprintf("want a JSON object, got a JSON %s", typeErr.Value)
	}
	var timeErr *time.ParseError
	if errors.As(err, &timeErr) {
		return "notAfter: want an RFC 3339 time such as 2026-01-02T15:04:05Z"
	}
	msg := err.Error()
	msg = strings.TrimPrefix(msg, "json: ")
	if strings.HasPrefix(msg, "unknown field ") {
		return msg + " (job fields are id, idempotencyKey, tenantId, managedDeviceId, userId, detectedAppId, replyTo, requestedBy, ticket, notAfter)"
	}
	return truncate(msg, 200)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// Policy is what a worker allows jobs to ask for.
type Policy struct {
	// DefaultTenant is used when a job names no tenant (AZURE_TENANT_ID).
	DefaultTenant string
	// Tenants lists the tenants jobs may target (RECOVER_TENANTS). Empty
	// allows only DefaultTenant.
	Tenants []string
	// Prefix is the service's subject prefix (RECOVER_PREFIX). Under it, a
	// job may name only its own source's results as replyTo: a result on
	// another source's subject would be read as theirs, and one on a jobs,
	// DLQ or audit subject would forge an entry. Empty means
	// "recoverpasscode".
	Prefix string
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
	prefix := p.Prefix
	if prefix == "" {
		prefix = "recoverpasscode"
	}
	if replyTo == prefix || strings.HasPrefix(replyTo, prefix+".") {
		own := prefix + ".results." + source + "."
		if !strings.HasPrefix(replyTo, own) {
			return fmt.Errorf("replyTo: %q is a %s subject other than this source's results; use a subject under %s, or an inbox", truncate(replyTo, 64), prefix, own)
		}
	}
	if p.InboxPerSource && strings.HasPrefix(replyTo, inboxRoot) {
		own := inboxRoot + source + "."
		if !strings.HasPrefix(replyTo, own) {
			return fmt.Errorf("replyTo: %q is an inbox other than source %s's own; this worker answers only inboxes under %s (RECOVER_INBOX_PER_SOURCE), which its client creates with the inbox prefix %s%s", truncate(replyTo, 64), source, own, inboxRoot, source)
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
	if !validID(j.ID) {
		return fmt.Errorf("id: %q is not usable as a job id: use 1 to 128 letters, digits, '-' or '_'", truncate(j.ID, 64))
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
	if j.ReplyTo != "" && !validSubject(j.ReplyTo) {
		return fmt.Errorf("replyTo: %q is not a NATS subject a result can be published to (no spaces, wildcards or empty tokens, at most 256 bytes)", truncate(j.ReplyTo, 64))
	}
	if j.TenantID == "" {
		j.TenantID = p.DefaultTenant
	}
	if err := j.Target().Validate(); err != nil {
		return err
	}
	if !p.allows(j.TenantID) {
		return fmt.Errorf("tenantId: tenant %s is not one this worker may act on (RECOVER_TENANTS)", j.TenantID)
	}
	return nil
}

// validID reports whether s can be a job id: it becomes a subject token and
// part of a Nats-Msg-Id.
func validID(s string) bool {
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

// validSubject reports whether s is a literal NATS subject: dot-separated,
// non-empty tokens with no whitespace or wildcards.
func validSubject(s string) bool {
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
