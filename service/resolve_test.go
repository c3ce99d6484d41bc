package service_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/recoverpasscode/recoverpasscode/graph/graphsim"
	"github.com/recoverpasscode/recoverpasscode/internal/testsystem"
	"github.com/recoverpasscode/recoverpasscode/wire"
)

// A job that names its device by its Entra ID device id or serial number
// is resolved with one read and then acts on that device alone; no match,
// or several, is rejected with the count and no POST; a value that could
// change the filter is rejected before any read.
func TestJobsNamingDevicesByOtherIDsAreResolvedWithOneRead(t *testing.T) {
	t.Parallel()
	sys := testsystem.Start(t, graphsim.Config{})
	const (
		entraID    = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"
		otherEntra = "9a8b7c6d-5e4f-4a3b-8c2d-000000000000"
		unknown    = "9a8b7c6d-5e4f-4a3b-8c2d-ffffffffffff"
	)
	resolved := testsystem.DeviceN(1)
	sys.GS.AddDevice(graphsim.Device{ID: resolved, AzureADDeviceID: entraID, SerialNumber: "C02XL0GRJGH5"})
	// Two devices share an Entra ID device id and a serial (a re-enrolled
	// device whose old record lingers).
	sys.GS.AddDevice(graphsim.Device{ID: testsystem.DeviceN(2), AzureADDeviceID: otherEntra, SerialNumber: "DUP-1"})
	sys.GS.AddDevice(graphsim.Device{ID: testsystem.DeviceN(3), AzureADDeviceID: otherEntra, SerialNumber: "dup-1"})
	sys.StartWorker(sys.Config("w1"))

	jobs := []wire.Job{
		{ID: "by-entra", AzureADDeviceID: entraID, Ticket: "INC7"},
		{ID: "by-serial", SerialNumber: "C02XL0GRJGH5", IdempotencyKey: "serial-key"},
		{ID: "unknown", AzureADDeviceID: unknown},
		{ID: "duplicated", AzureADDeviceID: otherEntra},
		{ID: "duplicated-serial", SerialNumber: "DUP-1"},
	}
	for _, j := range jobs {
		sys.Submit("automation", j)
	}
	// Values that would change the query never reach Graph.
	sys.Publish("automation", "quote", []byte(`{"serialNumber":"x' or serialNumber ne 'y"}`))
	sys.Publish("automation", "operators", []byte(`{"serialNumber":"a&$filter=id ne null"}`))
	sys.Publish("automation", "both", []byte(`{"serialNumber":"C02XL0GRJGH5","managedDeviceId":"`+resolved+`"}`))
	results := sys.Results("", len(jobs)+3, 30*time.Second)

	for _, id := range []string{"by-entra", "by-serial"} {
		r := results[id]
		if r.Status != wire.Succeeded || r.ManagedDeviceID != resolved || r.Attempts != 1 {
			t.Errorf("%s: %+v; want succeeded on %s", id, r, resolved)
		}
	}
	if r := results["by-entra"]; r.AzureADDeviceID != entraID || r.Ticket != "INC7" {
		t.Errorf("by-entra does not say what it asked for: %+v", r)
	}
	if r := results["unknown"]; r.Status != wire.Rejected || r.DeviceMatches == nil || *r.DeviceMatches != 0 || !strings.Contains(r.Error, "matches no managed device") {
		t.Errorf("unknown: %+v", r)
	}
	for _, id := range []string{"duplicated", "duplicated-serial"} {
		r := results[id]
		if r.Status != wire.Rejected || r.DeviceMatches == nil || *r.DeviceMatches != 2 || !strings.Contains(r.Error, "matches 2 managed devices") {
			t.Errorf("%s: %+v", id, r)
		}
	}
	for _, id := range []string{"quote", "operators", "both"} {
		if r := results[id]; r.Status != wire.Rejected {
			t.Errorf("%s: %+v; want rejected", id, r)
		}
	}

	var reads, posts int
	for _, c := range sys.GS.Calls() {
		switch c.Method {
		case http.MethodGet:
			reads++
			if c.Status != http.StatusOK || !strings.Contains(c.Path, "managedDevices") {
				t.Errorf("read %s answered %d", c.Path, c.Status)
			}
		case http.MethodPost:
			posts++
			if !strings.EqualFold(c.DeviceID, resolved) {
				t.Errorf("POST to %s, not the resolved device", c.DeviceID)
			}
		}
	}
	if reads != 5 || posts != 2 {
		t.Errorf("graph saw %d reads and %d POSTs; want 5 (one per job to resolve) and 2", reads, posts)
	}
	if n := sys.GS.Performed(resolved); n != 2 {
		t.Errorf("the resolved device was acted on %d times; want 2", n)
	}

	// The audit trail records the resolved device with what was asked.
	events := auditEvents(t, sys, len(jobs)+3+2)
	kinds := map[string]bool{}
	for _, e := range events {
		if e.JobID != "by-entra" {
			continue
		}
		kinds[e.Kind] = true
		if e.ManagedDeviceID != resolved || e.AzureADDeviceID != entraID {
			t.Errorf("audit event %s of by-entra: device %q, asked %q", e.Kind, e.ManagedDeviceID, e.AzureADDeviceID)
		}
	}
	if !kinds[wire.KindGraphCall] || !kinds[wire.KindDecision] {
		t.Errorf("by-entra's audit events: %v", kinds)
	}
}
