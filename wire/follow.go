package wire

import "time"

// KindConfirmation is the audit event of a followed job's confirmation:
// what became of the action on the device.
const KindConfirmation = "confirmation"

// The states a Confirmation can carry. All but StateUnknown are Intune's
// final actionStates of the device's recoverPasscode action.
const (
	// StateDone: the device carried the action out.
	StateDone = "done"
	// StateFailed: the device tried and failed.
	StateFailed = "failed"
	// StateCanceled: the action was canceled before the device ran it.
	StateCanceled = "canceled"
	// StateNotSupported: the device cannot do it (its platform or
	// enrollment type does not allow recovering the passcode).
	StateNotSupported = "notSupported"
	// StateUnknown: the follow deadline (RECOVER_FOLLOW_FOR) passed before
	// the action reached a final state; the device may not have checked in.
	StateUnknown = "unknown"
)

// FinalActionState reports whether an Intune actionState ends a follow.
func FinalActionState(s string) bool {
	switch s {
	case StateDone, StateFailed, StateCanceled, StateNotSupported:
		return true
	}
	return false
}

// Confirmation is the second, separate fact about a followed job that
// succeeded: what the device did with the action. One is published per
// followed job, on <prefix>.confirmations.<source>.<jobId>, and stored.
type Confirmation struct {
	JobID           string `json:"jobId"`
	IdempotencyKey  string `json:"idempotencyKey"`
	Source          string `json:"source"`
	TenantID        string `json:"tenantId,omitempty"`
	ManagedDeviceID string `json:"managedDeviceId"`
	AzureADDeviceID string `json:"azureADDeviceId,omitempty"`
	SerialNumber    string `json:"serialNumber,omitempty"`
	RequestedBy     string `json:"requestedBy,omitempty"`
	Ticket          string `json:"ticket,omitempty"`
	// State is the action's final actionState, or StateUnknown.
	State string `json:"state"`
	// LastUpdated is the action's lastUpdatedDateTime as Intune reported
	// it; zero for StateUnknown without any matching action.
	LastUpdated time.Time `json:"lastUpdated,omitzero"`
	// DeviceName and LastSyncDateTime are the device's, as last read.
	DeviceName       string    `json:"deviceName,omitempty"`
	LastSyncDateTime time.Time `json:"lastSyncDateTime,omitzero"`
	// CalledAt is when Graph accepted the call (the job's finishedAt); the
	// action followed is the recoverPasscode action that started at or
	// after it.
	CalledAt time.Time `json:"calledAt"`
	// ConfirmedAt is when the final state was read (or the deadline passed).
	ConfirmedAt time.Time `json:"confirmedAt"`
	// Polls counts the reads of the device.
	Polls int `json:"polls"`
	// Error explains StateUnknown, for a person.
	Error  string `json:"error,omitempty"`
	Worker string `json:"worker"`
}

// FollowsStream holds one record per followed job still being followed,
// with its next poll time: the durable state of following.
func (n Names) FollowsStream() string { return n.stream("FOLLOWS") }

// Follow is the subject of a followed job's record.
func (n Names) Follow(source, jobID string) string {
	return n.prefix() + ".follows." + source + "." + jobID
}

// FollowsWildcard matches every follow record.
func (n Names) FollowsWildcard() string { return n.prefix() + ".follows.>" }

// ConfirmationsStream stores every confirmation.
func (n Names) ConfirmationsStream() string { return n.stream("CONFIRMATIONS") }

// Confirmation is the subject of a followed job's confirmation.
func (n Names) Confirmation(source, jobID string) string {
	return n.prefix() + ".confirmations." + source + "." + jobID
}

// ConfirmationsWildcard matches every confirmation.
func (n Names) ConfirmationsWildcard() string { return n.prefix() + ".confirmations.>" }

// ConfirmationsOf matches every confirmation of source.
func (n Names) ConfirmationsOf(source string) string {
	return n.prefix() + ".confirmations." + source + ".>"
}
