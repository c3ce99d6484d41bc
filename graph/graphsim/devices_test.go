package graphsim_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/recoverpasscode/recoverpasscode/graph/graphsim"
)

// TestFilterOnDeviceIDs: $filter on azureADDeviceId and serialNumber
// finds the devices added with them; a literal with a doubled quote is one
// value, and any other filter is 400.
func TestFilterOnDeviceIDs(t *testing.T) {
	s := newServer(t, graphsim.Config{})
	token := appToken(t, s)
	s.AddDevice(graphsim.Device{ID: deviceID, AzureADDeviceID: "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d", SerialNumber: "O'BRIEN-1"})
	s.AddDevice(graphsim.Device{ID: "bbbbbbbb-bbbb-4ccc-8ddd-eeeeeeeeeeee", SerialNumber: "twin"})
	s.AddDevice(graphsim.Device{ID: "cccccccc-bbbb-4ccc-8ddd-eeeeeeeeeeee", SerialNumber: "TWIN"})
	find := func(filter string) (int, []string) {
		t.Helper()
		q := "?$filter=" + strings.ReplaceAll(url.QueryEscape(filter), "+", "%20") + "&$select=id"
		resp, body, err := do(t, testContext(t), s.Client(), s, request{method: http.MethodGet, path: "/deviceManagement/managedDevices" + q, token: token})
		if err != nil {
			t.Fatal(err)
		}
		var page struct{ Value []struct{ ID string } }
		_ = json.Unmarshal([]byte(body), &page)
		var ids []string
		for _, v := range page.Value {
			ids = append(ids, v.ID)
		}
		return resp.StatusCode, ids
	}
	for _, tc := range []struct {
		filter string
		status int
		n      int
	}{
		{"azureADDeviceId eq '9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d'", 200, 1},
		{"serialNumber eq 'O''BRIEN-1'", 200, 1},
		{"serialNumber eq 'twin'", 200, 2},
		{"serialNumber eq 'nobody'", 200, 0},
		{"serialNumber eq 'O'BRIEN-1'", 400, 0},
		{"serialNumber eq 'x' or serialNumber ne 'y'", 400, 0},
		{"deviceName eq 'x'", 400, 0},
	} {
		status, ids := find(tc.filter)
		if status != tc.status || len(ids) != tc.n {
			t.Errorf("%s: %d %v; want %d with %d devices", tc.filter, status, ids, tc.status, tc.n)
		}
	}
}

// TestDeviceChecksIn: an action sent to a device is pending until the
// device checks in, then in the state its check-in says; a device that
// never checks in stays pending. Reads have their own limit: the reads
// over it are 429, and POSTs still pass.
func TestDeviceChecksIn(t *testing.T) {
	s := newServer(t, graphsim.Config{ReadLimit: 4, Window: time.Hour, CheckInDelay: time.Hour})
	token := appToken(t, s)
	ctx := testContext(t)
	const failing, silent = "bbbbbbbb-bbbb-4ccc-8ddd-eeeeeeeeeeee", "cccccccc-bbbb-4ccc-8ddd-eeeeeeeeeeee"
	s.SetDeviceCheckIn(failing, 0, "failed")
	s.SetDeviceCheckIn(silent, 0, "")
	for _, id := range []string{deviceID, failing, silent} {
		if resp, body, err := do(t, ctx, s.Client(), s, request{path: managedDevicePath(id), token: token}); err != nil || resp.StatusCode != 204 {
			t.Fatalf("POST %s: %v %v %s", id, err, resp, body)
		}
	}
	state := func(id string) (int, string) {
		t.Helper()
		resp, body, err := do(t, ctx, s.Client(), s, request{method: http.MethodGet, path: "/deviceManagement/managedDevices/" + id + "?$select=deviceActionResults,deviceName,lastSyncDateTime", token: token})
		if err != nil {
			t.Fatal(err)
		}
		var d struct {
			DeviceName string `json:"deviceName"`
			Actions    []struct {
				ActionName, ActionState string
			} `json:"deviceActionResults"`
		}
		_ = json.Unmarshal([]byte(body), &d)
		if resp.StatusCode != 200 {
			return resp.StatusCode, ""
		}
		if len(d.Actions) != 1 || d.Actions[0].ActionName != "recoverPasscode" || d.DeviceName == "" {
			t.Fatalf("device %s: %s", id, body)
		}
		return 200, d.Actions[0].ActionState
	}
	for id, want := range map[string]string{deviceID: "pending", failing: "failed", silent: "pending"} {
		if status, got := state(id); status != 200 || got != want {
			t.Errorf("device %s: %d %s; want %s", id, status, got, want)
		}
	}
	if status, _ := state(deviceID); status != 200 {
		t.Errorf("the fourth read: %d; want 200", status)
	}
	if status, _ := state(deviceID); status != http.StatusTooManyRequests {
		t.Errorf("the fifth read in the window: %d; want 429", status)
	}
	if resp, _, err := do(t, ctx, s.Client(), s, request{path: managedDevicePath(deviceID), token: token}); err != nil || resp.StatusCode != 204 {
		t.Errorf("a POST after the reads' limit: %v %v", err, resp)
	}
	if n := s.MaxReadsInWindow(tenantID, appID, time.Hour); n != 5 {
		t.Errorf("MaxReadsInWindow = %d; want 5", n)
	}
	if n := s.MaxWritesInWindow(tenantID, appID, time.Hour); n != 4 {
		t.Errorf("MaxWritesInWindow = %d; want 4", n)
	}
}
