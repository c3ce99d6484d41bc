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
