package wire

import (
	"time"
)

// Status is how a job ended.
type Status string

// The statuses a result can carry.
const (
	// Succeeded: Graph answered 204 No Content.
	Succeeded Status = "succeeded"
	// Failed: Graph refused the action, or it could not be done within the
	// retry bounds. The result carries Graph's status and code.
	Failed Status = "failed"
	// Rejected: the job was invalid or not allowed; Graph was not called.
	Rejected Status = "rejected"
	// Expired: the job's notAfter passed before it could be started.
	Expired Status = "expired"
)

// Result is the one answer to a job, published to its reply subject and
// stored in the results stream.
type Result struct {
	JobID           string `json:"jobId"`
	IdempotencyKey  string `json:"idempotencyKey"`
	Source          string `json:"source"`
	TenantID        string `json:"tenantId,omitempty"`
	ManagedDeviceID string `json:"managedDeviceId,omitempty"`
	// AzureADDeviceID and SerialNumber are what a job that named its
	// device by them asked for; ManagedDeviceID is then the device they
	// resolved to (empty when they resolved to none or several).
	AzureADDeviceID string `json:"azureADDeviceId,omitempty"`
	SerialNumber    string `json:"serialNumber,omitempty"`
	// DeviceMatches is how many managed devices the job's azureADDeviceId
	// or serialNumber matched, when it was not exactly one (the job is then
	// rejected).
	DeviceMatches *int `json:"deviceMatches,omitempty"`
	// Follow says a confirmation follows this result: the fleet polls the
	// device until the action is done on it (see Confirmation).
	Follow        bool   `json:"follow,omitempty"`
	UserID        string `json:"userId,omitempty"`
	DetectedAppID string `json:"detectedAppId,omitempty"`
	RequestedBy   string `json:"requestedBy,omitempty"`
	Ticket        string `json:"ticket,omitempty"`
	Status        Status `json:"status"`
	// Replayed is true when the result was served from the idempotency
	// record of an earlier job with the same key: Graph was not called again.
	Replayed bool `json:"replayed"`
	// Uncertain is true when this job took over the key from a worker that
	// died after it may have called Graph: the action may have run twice.
	// UncertainReason says why.
	Uncertain       bool   `json:"uncertain,omitempty"`
	UncertainReason string `json:"uncertainReason,omitempty"`
	// Attempts counts the Graph calls made for this job.
	Attempts int `json:"attempts"`
	// Graph is the last Graph response, when Graph was called.
	Graph *GraphOutcome `json:"graph,omitempty"`
	// CalledAt is when the call that succeeded was let go to Graph: the
	// action a follow looks for on the device started at or after it.
	CalledAt time.Time `json:"calledAt,omitzero"`
	// Error explains, for a person, why the job did not succeed.
	Error      string    `json:"error,omitempty"`
	QueuedAt   time.Time `json:"queuedAt"`
	StartedAt  time.Time `json:"startedAt"`
	FinishedAt time.Time `json:"finishedAt"`
	Worker     string    `json:"worker"`
	// Traceparent is the W3C trace context the job arrived with, if any.
	Traceparent string `json:"traceparent,omitempty"`
}

// GraphOutcome records Graph's answer to the last call.
type GraphOutcome struct {
	Status          int    `json:"status"`
	RequestID       string `json:"requestId,omitempty"`
	ClientRequestID string `json:"clientRequestId,omitempty"`
	ErrorCode       string `json:"errorCode,omitempty"`
	ErrorMessage    string `json:"errorMessage,omitempty"`
}

// NewResult starts the result of job j.
func NewResult(j *Job, meta Meta, worker string, started time.Time) Result {
	return Result{
		JobID:           j.ID,
		IdempotencyKey:  j.IdempotencyKey,
		Source:          meta.Source,
		TenantID:        j.TenantID,
		ManagedDeviceID: j.ManagedDeviceID,
		AzureADDeviceID: j.AzureADDeviceID,
		SerialNumber:    j.SerialNumber,
		UserID:          j.UserID,
		DetectedAppID:   j.DetectedAppID,
		RequestedBy:     j.RequestedBy,
		Ticket:          j.Ticket,
		QueuedAt:        meta.Timestamp,
		StartedAt:       started,
		Worker:          worker,
		Traceparent:     meta.Traceparent,
	}
}
