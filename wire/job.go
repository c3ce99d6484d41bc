package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
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
	// ManagedDeviceID is the Intune managed device. Required, unless the
	// job names the device by AzureADDeviceID or SerialNumber instead:
	// exactly one of the three.
	ManagedDeviceID string `json:"managedDeviceId"`
	// AzureADDeviceID names the device by its Entra ID device id (a GUID),
	// as Defender alerts and Entra ID events do; the worker resolves it to
	// the managed device with one Graph read.
	AzureADDeviceID string `json:"azureADDeviceId,omitempty"`
	// SerialNumber names the device by its hardware serial number, resolved
	// like AzureADDeviceID.
	SerialNumber string `json:"serialNumber,omitempty"`
	// Follow asks the fleet, after a succeeded call, to poll the device
	// until the action is done on it (or has failed, or the follow deadline
	// passes) and to publish a confirmation. A source may follow all its
	// jobs by default (RECOVER_FOLLOW_SOURCES).
	Follow bool `json:"follow,omitempty"`
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
func (j *Job) Target() Target {
	return Target{
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
	if j.ID == "" || (err != nil && !ValidID(j.ID)) {
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
		return errors.New("job is empty: want a JSON object with at least managedDeviceId (or azureADDeviceId or serialNumber)")
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
		return msg + " (job fields are id, idempotencyKey, tenantId, managedDeviceId, azureADDeviceId, serialNumber, userId, detectedAppId, replyTo, requestedBy, ticket, notAfter, follow)"
	}
	return Truncate(msg, 200)
}
