package wire

import (
	"regexp"
	"time"
)

// Kinds of audit event.
const (
	// KindGraphCall is one call to Graph, whatever its answer.
	KindGraphCall = "graph_call"
	// KindDecision is a job's terminal decision: its result.
	KindDecision = "decision"
	// KindHeld is a job held because its source is over its budget
	// (RECOVER_SOURCE_LIMITS): it waits, Graph is not called.
	KindHeld = "held"
	// KindReleased is a held job going on: its source's budget allowed it
	// again, or an operator released it (Reason says which).
	KindReleased = "released"

	// Operator actions taken in the console, each naming the person
	// (Operator). Replay: a dead letter was submitted again (JobID is the
	// replay's, Reason says from which dead letter and with which key).
	// Release: a held job was released. Pause and Resume: a tenant's
	// Graph calls were stopped or let go again (TenantID; Reason says
	// until when and for which app).
	KindOperatorReplay  = "operator_replay"
	KindOperatorRelease = "operator_release"
	KindOperatorPause   = "operator_pause"
	KindOperatorResume  = "operator_resume"
)

// AuditEvent is one entry of the audit trail: who asked for what, which
// call was made, and what came of it. Events go to
// <prefix>.audit.<source>.<tenantId>.<managedDeviceId>.<yyyymmdd>
// (Names.Audit).
type AuditEvent struct {
	Kind            string        `json:"kind"`
	JobID           string        `json:"jobId"`
	IdempotencyKey  string        `json:"idempotencyKey"`
	Source          string        `json:"source"`
	RequestedBy     string        `json:"requestedBy,omitempty"`
	Ticket          string        `json:"ticket,omitempty"`
	TenantID        string        `json:"tenantId,omitempty"`
	ManagedDeviceID string        `json:"managedDeviceId,omitempty"`
	AzureADDeviceID string        `json:"azureADDeviceId,omitempty"`
	SerialNumber    string        `json:"serialNumber,omitempty"`
	UserID          string        `json:"userId,omitempty"`
	DetectedAppID   string        `json:"detectedAppId,omitempty"`
	Form            string        `json:"form,omitempty"`
	Attempt         int           `json:"attempt,omitempty"`
	Graph           *GraphOutcome `json:"graph,omitempty"`
	DurationMS      float64       `json:"durationMs,omitempty"`
	Status          Status        `json:"status,omitempty"`
	Replayed        bool          `json:"replayed,omitempty"`
	Uncertain       bool          `json:"uncertain,omitempty"`
	Error           string        `json:"error,omitempty"`
	// State is a confirmation's state (KindConfirmation).
	State string `json:"state,omitempty"`
	// Reason says why a job was held or released (KindHeld, KindReleased).
	Reason string `json:"reason,omitempty"`
	// Operator names the person who took an operator action (the
	// KindOperator* kinds): their user principal name and object id.
	Operator    string    `json:"operator,omitempty"`
	Worker      string    `json:"worker"`
	Traceparent string    `json:"traceparent,omitempty"`
	At          time.Time `json:"at"`
}

// NewAuditEvent describes res as an event of the given kind.
func NewAuditEvent(kind string, res *Result, at time.Time) AuditEvent {
	e := AuditEvent{
		Kind:            kind,
		JobID:           res.JobID,
		IdempotencyKey:  res.IdempotencyKey,
		Source:          res.Source,
		RequestedBy:     res.RequestedBy,
		Ticket:          res.Ticket,
		TenantID:        res.TenantID,
		ManagedDeviceID: res.ManagedDeviceID,
		AzureADDeviceID: res.AzureADDeviceID,
		SerialNumber:    res.SerialNumber,
		UserID:          res.UserID,
		DetectedAppID:   res.DetectedAppID,
		Attempt:         res.Attempts,
		Worker:          res.Worker,
		Traceparent:     res.Traceparent,
		At:              at,
	}
	if res.Graph != nil {
		g := *res.Graph
		e.Graph = &g
	}
	if kind == KindDecision {
		e.Status = res.Status
		e.Replayed = res.Replayed
		e.Uncertain = res.Uncertain
		e.Error = res.Error
	}
	return e
}

// traceparentRE is the W3C Trace Context header, version 00: a non-zero
// trace id and parent id.
var traceparentRE = regexp.MustCompile(`^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$`)

// ValidTraceparent reports whether v is a W3C traceparent worth carrying;
// anything else is dropped rather than copied into results and logs.
func ValidTraceparent(v string) bool {
	return traceparentRE.MatchString(v) && v[3:35] != "00000000000000000000000000000000" && v[36:52] != "0000000000000000"
}
