package graph_test

import (
	"errors"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/recoverpasscode/recoverpasscode/graph"
	"github.com/recoverpasscode/recoverpasscode/wire"
)

// TestFindDevicesRequest: one GET of managedDevices with the filter as an
// escaped OData literal and $select=id; the ids come back as listed, and a
// refusal is classified like a POST's.
func TestFindDevicesRequest(t *testing.T) {
	status := http.StatusOK
	g := newFakeGraph(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("request-id", "req-1")
		if status != http.StatusOK {
			w.Header().Set("Retry-After", "3")
			w.WriteHeader(status)
			_, _ = w.Write([]byte(`{"error":{"code":"TooManyRequests","message":"slow down"}}`))
			return
		}
		_, _ = w.Write([]byte(`{"value":[{"id":"0f8fad5b-d9cb-469f-a165-70867728950e"},{"id":"7c9e6679-7425-40de-944b-e07fc1f90ae7"}]}`))
	})
	c := g.client(t, nil, time.Second)
	ids, resp, err := c.FindDevices(t.Context(), "", wire.Lookup{Field: wire.FieldSerialNumber, Value: "VM 1/2"})
	if err != nil || len(ids) != 2 || resp.RequestID != "req-1" {
		t.Fatalf("FindDevices = %v, %+v, %v", ids, resp, err)
	}
	req := g.requests()[0]
	q, _ := url.ParseQuery(req.RawQuery)
	if req.Method != http.MethodGet || req.EscapedPath != "/v1.0/deviceManagement/managedDevices" || q.Get("$filter") != "serialNumber eq 'VM 1/2'" || q.Get("$select") != "id" || req.Header.Get("client-request-id") == "" {
		t.Errorf("request %s %s?%s", req.Method, req.EscapedPath, req.RawQuery)
	}
	if _, _, err := c.FindDevices(t.Context(), "", wire.Lookup{Field: wire.FieldSerialNumber, Value: "x' or 1 eq 1"}); err == nil || len(g.requests()) != 1 {
		t.Errorf("an invalid value was sent: %v", err)
	}
	status = http.StatusTooManyRequests
	_, _, err = c.FindDevices(t.Context(), "", wire.Lookup{Field: wire.FieldAzureADDeviceID, Value: "0f8fad5b-d9cb-469f-a165-70867728950e"})
	var apiErr *graph.APIError
	if !errors.Is(err, graph.ErrThrottled) || !errors.As(err, &apiErr) || apiErr.RetryAfter != 3*time.Second {
		t.Errorf("a 429 read: %v", err)
	}
}

// TestDeviceActionOfTheCall: the action followed is the latest
// recoverPasscode action that started at or after the call (less the
// slack), not an older one nor another action.
func TestDeviceActionOfTheCall(t *testing.T) {
	call := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	d := graph.DeviceState{Actions: []graph.ActionResult{
		{ActionName: "recoverPasscode", ActionState: "done", StartDateTime: call.Add(-time.Hour)},
		{ActionName: "remoteLock", ActionState: "done", StartDateTime: call.Add(time.Second)},
		{ActionName: "recoverPasscode", ActionState: "pending", StartDateTime: call.Add(-time.Second)},
	}}
	a, ok := d.Action(graph.ActionRecoverPasscode, call, 5*time.Second)
	if !ok || a.ActionState != "pending" {
		t.Errorf("Action = %+v, %t; want the pending one that started within the slack", a, ok)
	}
	if _, ok := d.Action(graph.ActionRecoverPasscode, call, 0); ok {
		t.Error("an action before the call was taken for it")
	}
}

// TestReadResetAfterSent: a read whose connection drops after it was sent
// is transient, not an unknown outcome like a POST's: reading twice is
// harmless.
func TestReadResetAfterSent(t *testing.T) {
	g := newFakeGraph(t, func(w http.ResponseWriter, r *http.Request) {
		if conn, _, err := w.(http.Hijacker).Hijack(); err == nil {
			conn.Close()
		}
	})
	_, _, err := g.client(t, nil, 0).Device(t.Context(), "", "0f8fad5b-d9cb-469f-a165-70867728950e")
	if !errors.Is(err, graph.ErrTransient) || errors.Is(err, graph.ErrUnknownOutcome) {
		t.Fatalf("error = %v, want ErrTransient and not ErrUnknownOutcome", err)
	}
}
