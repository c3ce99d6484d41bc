package wire

import (
	"strings"
	"testing"
)

func TestAuditSubjectCarriesTenantAndDevice(t *testing.T) {
	const tenant, device = "0F6A7A2C-3D1E-4A6B-9C1D-2B7E8F9A0B1C", "11111111-2222-4333-8444-555555555555"
	n := Names{Prefix: "rp"}
	for _, tc := range []struct {
		name, source, tenant, device, want string
	}{
		{"valid ids, lower-cased", "ticketing", tenant, device, "rp.audit.ticketing." + strings.ToLower(tenant) + "." + device},
		{"no tenant", "batch", "", device, "rp.audit.batch._." + device},
		{"device that is not a GUID", "batch", tenant, "abc.def", "rp.audit.batch." + strings.ToLower(tenant) + "._"},
		{"wildcards never become tokens", "automation", "*", ">", "rp.audit.automation._._"},
		{"source that is not a token", "a.b", tenant, device, "rp.audit._." + strings.ToLower(tenant) + "." + device},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := n.Audit(tc.source, tc.tenant, tc.device)
			if got != tc.want {
				t.Errorf("Audit(%q, %q, %q) = %q, want %q", tc.source, tc.tenant, tc.device, got, tc.want)
			}
			if !strings.HasPrefix(got, "rp.audit.") || strings.Count(got, ".") != 4 {
				t.Errorf("%q: want five tokens under the audit wildcard", got)
			}
		})
	}
	if got, want := n.AuditOfDevice(tenant, device), "rp.audit.*."+strings.ToLower(tenant)+"."+device; got != want {
		t.Errorf("AuditOfDevice = %q, want %q", got, want)
	}
}
