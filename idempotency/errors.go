package idempotency

import (
	"errors"

	"github.com/nats-io/nats.go/jetstream"
)

var (
	// ErrLost is returned by a Lease's Call, Renew, Complete and Release
	// when the record no longer belongs to it: the lease expired and
	// another owner took the key over, or the record was removed. Call then
	// does not call, and the caller must not write its outcome into the
	// record; once returned, Lease.Lost reports true.
	ErrLost = errors.New("idempotency: claim lost to another owner")

	// ErrNotHeld is returned by the methods of a nil Lease (that of a Claim
	// that is Busy or Done) and of one already completed or released.
	ErrNotHeld = errors.New("idempotency: claim not held")

	// ErrInvalidKey is wrapped by the error for an idempotency key that is
	// empty, too long or not printable text.
	ErrInvalidKey = errors.New("invalid idempotency key")
)

// isRevisionConflict reports whether a KeyValue write failed because the key
// was not at the expected revision. Besides nats.go's sentinels it checks the
// API error codes, because Create's retry over a delete marker returns the
// server's error unmapped, and replicated streams use a second code.
func isRevisionConflict(err error) bool {
	if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return true
	}
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) {
		return false
	}
	return apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant
}
