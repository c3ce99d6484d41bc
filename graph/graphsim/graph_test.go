package graphsim_test

import (
	"encoding/json"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/recoverpasscode/recoverpasscode/graph/graphsim"
)

var guidPattern = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// graphError is Graph's error shape.
type graphError struct {
	Error struct {
		Code       string `json:"code"`
		Message    string `json:"message"`
		InnerError struct {
			RequestID       string `json:"request-id"`
			ClientRequestID string `json:"client-request-id"`
			Date            string `json:"date"`
		} `json:"innerError"`
	} `json:"error"`
}

// TestPathForms calls each recoverPasscode path form and checks the 204,
// its headers and the recorded call.
func TestPathForms(t *testing.T) {
	s := newServer(t, graphsim.Config{})
	token := appToken(t, s)
	client := s.Client()
	const userGUID = "0a0b0c0d-1e1f-4a4b-8c8d-9e9f00112233"
	tests := []struct {
		name, path, form               string
		wantUser, wantApp, clientReqID string
	}{
		{name: "managedDevice", path: managedDevicePath(deviceID), form: graphsim.FormManagedDevice, clientReqID: "5d7a0c7e-0000-4000-8000-000000000001"},
		{name: "user by object ID", path: "/users/" + userGUID + "/managedDevices/" + deviceID + "/recoverPasscode", form: graphsim.FormUser, wantUser: userGUID},
		{name: "user by UPN", path: "/users/helpdesk.agent@contoso.com/managedDevices/" + deviceID + "/recoverPasscode", form: graphsim.FormUser, wantUser: "helpdesk.agent@contoso.com"},
		{name: "guest UPN with escaped #", path: "/users/ana_fabrikam.com%23EXT%23@contoso.onmicrosoft.com/managedDevices/" + deviceID + "/recoverPasscode", form: graphsim.FormUser, wantUser: "ana_fabrikam.com#EXT#@contoso.onmicrosoft.com"},
		{name: "detectedApp", path: "/deviceManagement/detectedApps/0000a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4/managedDevices/" + deviceID + "/recoverPasscode", form: graphsim.FormDetectedApp, wantApp: "0000a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := mustDo(t, client, s, request{path: tt.path, token: token, clientRequestID: tt.clientReqID})
			if resp.StatusCode != http.StatusNoContent || body != "" {
				t.Fatalf("answer = %d %q, want 204 and no body", resp.StatusCode, body)
			}
			reqID, clientReqID := resp.Header.Get("request-id"), resp.Header.Get("client-request-id")
			if !guidPattern.MatchString(reqID) || resp.Header.Get("Date") == "" {
				t.Errorf("request-id %q, Date %q: want a GUID and a date", reqID, resp.Header.Get("Date"))
			}
			if tt.clientReqID != "" && clientReqID != tt.clientReqID {
				t.Errorf("client-request-id = %q, want the request's %q echoed", clientReqID, tt.clientReqID)
			}
			if tt.clientReqID == "" && !guidPattern.MatchString(clientReqID) {
				t.Errorf("client-request-id = %q, want a new GUID", clientReqID)
			}
			c := s.Calls()[i]
			if c.Form != tt.form || c.DeviceID != deviceID || c.UserID != tt.wantUser || c.DetectedAppID != tt.wantApp ||
				c.Status != http.StatusNoContent || !c.Performed || c.RequestID != reqID || c.ClientRequestID != clientReqID || c.TenantID != tenantID || c.AppID != appID {
				t.Errorf("call = %+v", c)
			}
		})
	}
	if got := s.Performed(deviceID); got != len(tests) {
		t.Errorf("Performed(%s) = %d, want %d", deviceID, got, len(tests))
	}
	if got := s.Performed(strings.ToUpper(deviceID)); got != len(tests) {
		t.Errorf("Performed is case-sensitive: %d", got)
	}
}

// TestValidation checks that malformed calls are refused as Graph refuses
// them, without the action running.
func TestValidation(t *testing.T) {
	s := newServer(t, graphsim.Config{})
	token := appToken(t, s)
	client := s.Client()
	s.SetDeviceMissing(deviceID)
	const other = "12345678-1234-4234-8234-123456789abc"
	tests := []struct {
		name   string
		req    request
		status int
		code   string
	}{
		{"no token", request{path: managedDevicePath(other)}, 401, "InvalidAuthenticationToken"},
		{"unknown token", request{path: managedDevicePath(other), token: "forged"}, 401, "InvalidAuthenticationToken"},
		{"GET", request{method: http.MethodGet, path: managedDevicePath(other), token: token}, 405, "MethodNotAllowed"},
		{"body", request{path: managedDevicePath(other), token: token, body: "{}"}, 400, "BadRequest"},
		{"query", request{path: managedDevicePath(other) + "?$select=id", token: token}, 400, "BadRequest"},
		{"device not a GUID", request{path: managedDevicePath("not-a-guid"), token: token}, 400, "BadRequest"},
		{"device with braces", request{path: managedDevicePath("{" + other + "}"), token: token}, 400, "BadRequest"},
		{"escaped slash in device", request{path: "/deviceManagement/managedDevices/" + other + "%2F..%2Fx/recoverPasscode", token: token}, 400, "BadRequest"},
		{"escaped slash in user", request{path: "/users/a%2Fb@contoso.com/managedDevices/" + other + "/recoverPasscode", token: token}, 400, "BadRequest"},
		{"user neither GUID nor UPN", request{path: "/users/bob/managedDevices/" + other + "/recoverPasscode", token: token}, 400, "BadRequest"},
		{"UPN with $ prefix", request{path: "/users/$bob@contoso.com/managedDevices/" + other + "/recoverPasscode", token: token}, 400, "BadRequest"},
		{"unknown action", request{path: "/deviceManagement/managedDevices/" + other + "/wipe", token: token}, 404, "ResourceNotFound"},
		{"trailing slash", request{path: managedDevicePath(other) + "/", token: token}, 404, "ResourceNotFound"},
		{"unknown version", request{path: "/v2.0/deviceManagement/managedDevices/" + other + "/recoverPasscode", token: token}, 404, "ResourceNotFound"},
		{"missing device", request{path: managedDevicePath(deviceID), token: token}, 404, "ResourceNotFound"},
		{"missing device, upper case", request{path: managedDevicePath(strings.ToUpper(deviceID)), token: token}, 404, "ResourceNotFound"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.req.clientRequestID = "0f0f0f0f-0000-4000-8000-000000000000"
			resp, body := mustDo(t, client, s, tt.req)
			var e graphError
			if err := json.Unmarshal([]byte(body), &e); err != nil {
				t.Fatalf("body %q is not Graph's error JSON: %v", body, err)
			}
			if resp.StatusCode != tt.status || e.Error.Code != tt.code {
				t.Fatalf("answer = %d %s, want %d %s", resp.StatusCode, e.Error.Code, tt.status, tt.code)
			}
			in := e.Error.InnerError
			if in.RequestID != resp.Header.Get("request-id") || in.ClientRequestID != tt.req.clientRequestID || in.Date == "" || e.Error.Message == "" {
				t.Errorf("error = %+v, headers %v: want innerError matching the headers", e, resp.Header)
			}
			if !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
				t.Errorf("Content-Type = %q", resp.Header.Get("Content-Type"))
			}
		})
	}
	if got := s.Performed(other) + s.Performed(deviceID); got != 0 {
		t.Errorf("the action ran %d times on refused calls", got)
	}
	if got := len(s.Calls()); got != len(tests) {
		t.Errorf("recorded %d calls, want every refused call (%d)", got, len(tests))
	}
}

// A device made missing answers 404 until it is present again.
func TestDeviceMissingThenPresent(t *testing.T) {
	s := newServer(t, graphsim.Config{})
	token := appToken(t, s)
	client := s.Client()
	s.SetDeviceMissing(deviceID)
	if resp, _ := mustDo(t, client, s, request{path: managedDevicePath(deviceID), token: token}); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("missing device answered %d, want 404", resp.StatusCode)
	}
	s.SetDevicePresent(strings.ToUpper(deviceID))
	if resp, _ := mustDo(t, client, s, request{path: managedDevicePath(deviceID), token: token}); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("device present again answered %d, want 204", resp.StatusCode)
	}
	if got := s.Performed(deviceID); got != 1 {
		t.Errorf("the action ran %d times, want once", got)
	}
}

// TestExpiredToken shows an access token refused once expired, and MSAL
// getting a new one.
func TestExpiredToken(t *testing.T) {
	s := newServer(t, graphsim.Config{TokenLifetime: time.Minute})
	token := appToken(t, s)
	client := s.Client()
	s.ExpireTokens()
	resp, body := mustDo(t, client, s, request{path: managedDevicePath(deviceID), token: token})
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "InvalidAuthenticationToken") || resp.Header.Get("WWW-Authenticate") == "" {
		t.Fatalf("answer = %d %s, want 401 InvalidAuthenticationToken with WWW-Authenticate", resp.StatusCode, body)
	}
	if c := s.Calls()[0]; c.TenantID != tenantID || c.Performed {
		t.Errorf("call = %+v, want it attributed to the token's tenant and not performed", c)
	}
	// A one-minute token is below MSAL's five-minute refresh margin, so MSAL
	// asks for a new one rather than serving the expired one from its cache.
	if resp, _ := mustDo(t, client, s, request{path: managedDevicePath(deviceID), token: appToken(t, s)}); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("with a new token: %d, want 204", resp.StatusCode)
	}
}
