package batch

import (
	"strings"

	"github.com/recoverpasscode/recoverpasscode/wire"
)

// rowJob makes the job of one row and checks it the way the worker will,
// so that a bad row is reported before anything is published. Its id, key
// and reply subject are filled in later, once the batch has its name.
func rowJob(rec record, d Defaults) (wire.Job, error) {
	if rec.err != nil {
		return wire.Job{}, rec.err
	}
	f := rec.fields
	j := wire.Job{
		ManagedDeviceID: strings.TrimSpace(f["managedDeviceId"]),
		AzureADDeviceID: strings.TrimSpace(f["azureADDeviceId"]),
		SerialNumber:    strings.TrimSpace(f["serialNumber"]),
		UserID:          strings.TrimSpace(f["userId"]),
		DetectedAppID:   strings.TrimSpace(f["detectedAppId"]),
		TenantID:        orDefault(strings.TrimSpace(f["tenantId"]), d.TenantID),
		Ticket:          orDefault(strings.TrimSpace(f["ticket"]), d.Ticket),
		RequestedBy:     orDefault(strings.TrimSpace(f["requestedBy"]), d.RequestedBy),
		NotAfter:        d.NotAfter,
	}
	// The worker's Validate also checks the id, key and reply subject; a
	// placeholder id stands in for the one derived later. Which tenants are
	// allowed only the worker knows (RECOVER_TENANTS), so the row's own
	// tenant is the policy's default here and passes that check.
	check := j
	check.ID = "row"
	if err := (wire.Policy{DefaultTenant: j.TenantID}).Validate(&check); err != nil {
		return wire.Job{}, err
	}
	return j, nil
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}
