package writeback

import (
	"fmt"
	"strings"
	"time"

	"github.com/recoverpasscode/recoverpasscode/wire"
)

// Note is what a ticket is told about a result, one line per fact: what
// happened on which device, who asked and when, Graph's answer with its
// request-id, and the job. It is the text of a ServiceNow work note and
// the paragraphs of a Jira comment.
func Note(r wire.Result) []string {
	device := orDash(r.ManagedDeviceID)
	var lines []string
	switch r.Status {
	case wire.Succeeded:
		lines = append(lines, fmt.Sprintf("recoverPasscode succeeded for device %s: Intune accepted the action, and the device carries it out when it next checks in.", device))
	case wire.Failed:
		lines = append(lines, fmt.Sprintf("recoverPasscode failed for device %s: %s", device, orDash(r.Error)))
	case wire.Rejected:
		lines = append(lines, fmt.Sprintf("recoverPasscode was rejected for device %s, and Microsoft Graph was not called: %s", device, orDash(r.Error)))
	case wire.Expired:
		lines = append(lines, fmt.Sprintf("recoverPasscode expired for device %s before it could start, and Microsoft Graph was not called: %s", device, orDash(r.Error)))
	default:
		lines = append(lines, fmt.Sprintf("recoverPasscode ended %q for device %s: %s", r.Status, device, orDash(r.Error)))
	}
	if r.Replayed {
		lines = append(lines, "This answer comes from an earlier job with the same idempotency key: Graph was not called again.")
	}
	if r.Uncertain {
		lines = append(lines, "Caution: the action may have run twice: "+orDash(r.UncertainReason))
	}
	lines = append(lines, fmt.Sprintf("Requested by %s; queued %s, finished %s.", orDash(r.RequestedBy), stamp(r.QueuedAt), stamp(r.FinishedAt)))
	if g := r.Graph; g != nil {
		graph := fmt.Sprintf("Microsoft Graph answered HTTP %d", g.Status)
		if g.ErrorCode != "" {
			graph += " " + g.ErrorCode
		}
		graph += fmt.Sprintf(", request-id %s, client-request-id %s.", orDash(g.RequestID), orDash(g.ClientRequestID))
		lines = append(lines, graph)
	}
	var job strings.Builder
	fmt.Fprintf(&job, "Job %s", r.JobID)
	if r.TenantID != "" {
		fmt.Fprintf(&job, ", tenant %s", r.TenantID)
	}
	fmt.Fprintf(&job, ", %d Graph call(s)", r.Attempts)
	if r.Worker != "" {
		fmt.Fprintf(&job, ", worker %s", r.Worker)
	}
	job.WriteString(".")
	lines = append(lines, job.String())
	return lines
}

// ConfirmationNote is what a ticket is told about a followed job's
// confirmation (package follow), in a second work note or comment after
// the result's: whether the device did it, the device's name and last
// check-in as Intune reported them, and the job.
func ConfirmationNote(c wire.Confirmation) []string {
	device := orDash(c.ManagedDeviceID)
	if c.DeviceName != "" {
		device = fmt.Sprintf("%s (%s)", c.DeviceName, device)
	}
	var lines []string
	switch c.State {
	case wire.StateDone:
		lines = append(lines, fmt.Sprintf("Confirmed: the device did it. Device %s carried out recoverPasscode (Intune reports done, %s).", device, stamp(c.LastUpdated)))
	case wire.StateFailed:
		lines = append(lines, fmt.Sprintf("Failed on the device: device %s tried recoverPasscode and failed (Intune reports failed, %s).", device, stamp(c.LastUpdated)))
	case wire.StateCanceled:
		lines = append(lines, fmt.Sprintf("Canceled: recoverPasscode was canceled before device %s carried it out (Intune reports canceled, %s).", device, stamp(c.LastUpdated)))
	case wire.StateNotSupported:
		lines = append(lines, fmt.Sprintf("Not supported: device %s cannot recover its passcode (Intune reports notSupported, %s).", device, stamp(c.LastUpdated)))
	default:
		lines = append(lines, fmt.Sprintf("Unknown: whether device %s carried out recoverPasscode is not known: %s", device, orDash(c.Error)))
	}
	lines = append(lines, fmt.Sprintf("Device %s last checked in %s; Graph accepted the call %s, followed until %s (%d read(s)).",
		device, stamp(c.LastSyncDateTime), stamp(c.CalledAt), stamp(c.ConfirmedAt), c.Polls))
	job := fmt.Sprintf("Job %s", c.JobID)
	if c.TenantID != "" {
		job += ", tenant " + c.TenantID
	}
	if c.Worker != "" {
		job += ", worker " + c.Worker
	}
	lines = append(lines, job+".")
	return lines
}

// lines is the text a ticket gets for a delivery: the result's Note, or
// the confirmation's.
func (d delivery) lines() []string {
	if d.confirmation != nil {
		return ConfirmationNote(*d.confirmation)
	}
	return Note(d.result)
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
