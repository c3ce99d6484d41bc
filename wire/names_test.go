package wire

import (
	"strings"
	"testing"
	"time"
)

func TestAuditSubjectCarriesTenantAndDevice(t *testing.T) {
	const tenant, device = "0F6A7A2C-3D1E-4A6B-9C1D-2B7E8F9A0B1C", "11111111-2222-4333-8444-555555555555"
	n := Names{Prefix: "rp"}
	// 23:30 in New York is the next day in UTC.
	at := time.Date(2026, 12, 1, 23, 30, 0, 0, time.FixedZone("EST", -5*3600))
	for _, tc := range []struct {
		name, source, tenant, device, want string
	}{
		{"valid ids, lower-cased", "ticketing", tenant, device, "rp.audit.ticketing." + strings.ToLower(tenant) + "." + device + ".20261202"},
		{"no tenant", "batch", "", device, "rp.audit.batch._." + device + ".20261202"},
		{"device that is not a GUID", "batch", tenant, "abc.def", "rp.audit.batch." + strings.ToLower(tenant) + "._.20261202"},
		{"wildcards never become tokens", "automation", "*", ">", "rp.audit.automation._._.20261202"},
		{"source that is not a token", "a.b", tenant, device, "rp.audit._." + strings.ToLower(tenant) + "." + device + ".20261202"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := n.Audit(tc.source, tc.tenant, tc.device, at)
			if got != tc.want {
				t.Errorf("Audit(%q, %q, %q) = %q, want %q", tc.source, tc.tenant, tc.device, got, tc.want)
			}
			if !strings.HasPrefix(got, "rp.audit.") || strings.Count(got, ".") != 5 {
				t.Errorf("%q: want six tokens under the audit wildcard", got)
			}
		})
	}
	if got, want := n.AuditOfDevice(tenant, device), "rp.audit.*."+strings.ToLower(tenant)+"."+device+".*"; got != want {
		t.Errorf("AuditOfDevice = %q, want %q", got, want)
	}
}
