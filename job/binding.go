package job

import (
	"errors"
	"fmt"
	"strings"

	"github.com/rs/zerolog"

	"github.com/recoverpasscode/recoverpasscode/idempotency"
	"github.com/recoverpasscode/recoverpasscode/wire"
)

// LedgerBinding is what a job binds its idempotency key to: the source
// that submitted it, and its Graph target as the tenant followed by the
// action's escaped path, which names the path form and every id in it. A
// job that named its device by azureADDeviceId or serialNumber binds the
// managed device it resolved to. Ids compare as written: the same GUID in
// another case is another target.
func LedgerBinding(j *wire.Job, source string) idempotency.Binding {
	path, err := j.Target().Path()
	if err != nil {
		// Not for a job that passed validation (FuzzDecode checks that
		// every valid job has a path); without one only the source binds.
		return idempotency.Binding{Source: source}
	}
	return idempotency.Binding{Source: source, Target: j.TenantID + path}
}

// rejectBound answers a job whose key is bound to another source or
// target: rejected, Graph not called, the key's record left as it was.
func (h *Handler) rejectBound(j *wire.Job, res *wire.Result, err error, log zerolog.Logger) Outcome {
	var be *idempotency.BoundError
	if !errors.As(err, &be) {
		be = &idempotency.BoundError{}
	}
	msg := boundMessage(j, be)
	log.Info().Str("status", string(wire.Rejected)).Str("first_job_id", be.JobID).
		Str("first_source", be.Bound.Source).Msg("job rejected: idempotency key bound to another source or target")
	return h.finish(res, wire.Rejected, msg, Term, "rejected: "+msg)
}

// boundMessage says what the key was first used for and what to do.
func boundMessage(j *wire.Job, be *idempotency.BoundError) string {
	first := fmt.Sprintf("idempotencyKey %q was first used by job %s (source %s)", j.IdempotencyKey, be.JobID, be.Bound.Source)
	if be.Bound.Target != be.Asked.Target {
		return fmt.Sprintf("%s for %s, not %s; nothing was done: use a new idempotencyKey for another device or path",
			first, shownTarget(be.Bound.Target, j.TenantID), shownTarget(be.Asked.Target, j.TenantID))
	}
	return fmt.Sprintf("%s; a key belongs to the source that first used it, so nothing was done for source %s: use a new idempotencyKey",
		first, be.Asked.Source)
}

// shownTarget is a bound target without the tenant, which the key
// already names: the path, e.g. /deviceManagement/managedDevices/{id}/recoverPasscode.
func shownTarget(target, tenantID string) string {
	return strings.TrimPrefix(target, tenantID)
}
