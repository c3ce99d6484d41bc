package follow

import (
	"time"

	"github.com/recoverpasscode/recoverpasscode/wire"
)

// Record is a followed job's durable state: the one message of its subject
// in the follows stream, replaced at every poll that finds no final state.
type Record struct {
	JobID           string `json:"jobId"`
	IdempotencyKey  string `json:"idempotencyKey"`
	Source          string `json:"source"`
	TenantID        string `json:"tenantId"`
	ManagedDeviceID string `json:"managedDeviceId"`
	AzureADDeviceID string `json:"azureADDeviceId,omitempty"`
	SerialNumber    string `json:"serialNumber,omitempty"`
	RequestedBy     string `json:"requestedBy,omitempty"`
	Ticket          string `json:"ticket,omitempty"`
	Traceparent     string `json:"traceparent,omitempty"`
	// CalledAt is when the call Graph accepted was let go.
	CalledAt time.Time `json:"calledAt"`
	// Deadline is when following gives up with state unknown.
	Deadline time.Time `json:"deadline"`
	// NextPoll is when the device is to be read next.
	NextPoll time.Time `json:"nextPoll"`
	// Polls counts the reads made so far.
	Polls int `json:"polls"`
	// DeviceName and LastSync are the device's as last read.
	DeviceName string    `json:"deviceName,omitempty"`
	LastSync   time.Time `json:"lastSync,omitzero"`
}

// NewRecord starts the follow of res, a succeeded result, under s.
func NewRecord(res *wire.Result, s Schedule) Record {
	called := res.CalledAt
	if called.IsZero() {
		called = res.StartedAt
	}
	s = s.withDefaults()
	return Record{
		JobID: res.JobID, IdempotencyKey: res.IdempotencyKey, Source: res.Source,
		TenantID: res.TenantID, ManagedDeviceID: res.ManagedDeviceID,
		AzureADDeviceID: res.AzureADDeviceID, SerialNumber: res.SerialNumber,
		RequestedBy: res.RequestedBy, Ticket: res.Ticket, Traceparent: res.Traceparent,
		CalledAt: called,
		Deadline: called.Add(s.For),
		NextPoll: called.Add(s.First),
	}
}

// confirmation is what becomes of r: state, as of now, from what was read.
func (r Record) confirmation(state string, now time.Time, worker string) wire.Confirmation {
	return wire.Confirmation{
		JobID: r.JobID, IdempotencyKey: r.IdempotencyKey, Source: r.Source,
		TenantID: r.TenantID, ManagedDeviceID: r.ManagedDeviceID,
		AzureADDeviceID: r.AzureADDeviceID, SerialNumber: r.SerialNumber,
		RequestedBy: r.RequestedBy, Ticket: r.Ticket,
		State: state, DeviceName: r.DeviceName, LastSyncDateTime: r.LastSync,
		CalledAt: r.CalledAt, ConfirmedAt: now.UTC(), Polls: r.Polls, Worker: worker,
	}
}

// The defaults of Schedule.
const (
	DefaultFirst = time.Minute
	DefaultMax   = 15 * time.Minute
	DefaultFor   = 24 * time.Hour
)

// Schedule is when a follow polls. The zero value is the defaults.
type Schedule struct {
	// First is the wait from the call to the first poll
	// [RECOVER_FOLLOW_FIRST]. Defaults to DefaultFirst (1m).
	First time.Duration
	// Max caps the interval between polls, which doubles after each
	// [RECOVER_FOLLOW_MAX]. Defaults to DefaultMax (15m).
	Max time.Duration
	// For is how long after the call following gives up with state
	// unknown [RECOVER_FOLLOW_FOR]. Defaults to DefaultFor (24h).
	For time.Duration
}

func (s Schedule) withDefaults() Schedule {
	if s.First <= 0 {
		s.First = DefaultFirst
	}
	if s.Max <= 0 {
		s.Max = DefaultMax
	}
	if s.For <= 0 {
		s.For = DefaultFor
	}
	return s
}

// interval is the wait after the polls-th poll: First doubled polls
// times, at most Max.
func (s Schedule) interval(polls int) time.Duration {
	d := s.First
	for i := 0; i < polls && d < s.Max; i++ {
		d *= 2
	}
	return min(d, s.Max)
}
