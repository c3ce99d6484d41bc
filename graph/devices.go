package graph

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/recoverpasscode/recoverpasscode/wire"
)

// maxReadBody bounds a successful read's body: a filter by device id or
// serial number matches a handful of devices, and one device's action
// results are a few kilobytes.
const maxReadBody = 1 << 20

// ActionRecoverPasscode is the actionName Intune gives the recoverPasscode
// action in a device's deviceActionResults.
const ActionRecoverPasscode = "recoverPasscode"

// FindDevices returns the ids of the managed devices of tenantID whose
// property l.Field equals l.Value: one read,
// GET /deviceManagement/managedDevices?$filter=...&$select=id. The value
// is validated and escaped (see wire.Lookup.Query), so it cannot change
// the query. Failures are classified like RecoverPasscode's; a read is
// never an action, so ErrUnknownOutcome only means "try again".
func (c *Client) FindDevices(ctx context.Context, tenantID string, l wire.Lookup) ([]string, Response, error) {
	q, err := l.Query()
	if err != nil {
		return nil, Response{}, fmt.Errorf("graph: find devices: %w", err)
	}
	var page struct {
		Value []struct {
			ID string `json:"id"`
		} `json:"value"`
		NextLink string `json:"@odata.nextLink"`
	}
	resp, err := c.get(ctx, tenantID, "/deviceManagement/managedDevices?"+q, &page)
	if err != nil {
		return nil, resp, err
	}
	ids := make([]string, 0, len(page.Value))
	for _, d := range page.Value {
		ids = append(ids, d.ID)
	}
	if page.NextLink != "" {
		// More than a page of devices share the value: far more than one,
		// which is all the caller needs to know; the count is a floor.
		ids = append(ids, "")
	}
	return ids, resp, nil
}

// ActionResult is one entry of a device's deviceActionResults.
type ActionResult struct {
	ActionName          string    `json:"actionName"`
	ActionState         string    `json:"actionState"`
	StartDateTime       time.Time `json:"startDateTime"`
	LastUpdatedDateTime time.Time `json:"lastUpdatedDateTime"`
}

// DeviceState is what a follow reads of a managed device.
type DeviceState struct {
	DeviceName       string         `json:"deviceName"`
	LastSyncDateTime time.Time      `json:"lastSyncDateTime"`
	Actions          []ActionResult `json:"deviceActionResults"`
}

// Action returns the latest action named name that started at or after
// since (less slack, for the difference between this host's clock and
// Intune's), if there is one.
func (d DeviceState) Action(name string, since time.Time, slack time.Duration) (ActionResult, bool) {
	var best ActionResult
	found := false
	for _, a := range d.Actions {
		if !strings.EqualFold(a.ActionName, name) || a.StartDateTime.Before(since.Add(-slack)) {
			continue
		}
		if !found || a.StartDateTime.After(best.StartDateTime) {
			best, found = a, true
		}
	}
	return best, found
}

// Device reads the device's name, last check-in and action results: one
// read, GET /deviceManagement/managedDevices/{id}?$select=deviceActionResults,deviceName,lastSyncDateTime.
func (c *Client) Device(ctx context.Context, tenantID, deviceID string) (DeviceState, Response, error) {
	if !wire.IsGUID(deviceID) {
		return DeviceState{}, Response{}, fmt.Errorf("graph: device: %w", &wire.FieldError{Field: "managedDeviceId", Value: wire.Truncate(deviceID, 64), Reason: "must be a GUID"})
	}
	var d DeviceState
	path := "/deviceManagement/managedDevices/" + url.PathEscape(deviceID) + "?$select=deviceActionResults,deviceName,lastSyncDateTime"
	resp, err := c.get(ctx, tenantID, path, &d)
	return d, resp, err
}

// get makes one GET of pathAndQuery (escaped, relative to the Graph root)
// and decodes a 2xx body into into.
func (c *Client) get(ctx context.Context, tenantID, pathAndQuery string, into any) (Response, error) {
	return c.do(ctx, http.MethodGet, tenantID, pathAndQuery, Response{}, "read", func(resp Response, hr *http.Response, start time.Time, token string) (Response, error) {
		return c.decode(resp, hr, start, token, into)
	})
}

// decode reads a 2xx answer's body into into, else the error as finish does.
func (c *Client) decode(resp Response, hr *http.Response, start time.Time, token string, into any) (Response, error) {
	if hr.StatusCode < 200 || hr.StatusCode >= 300 {
		return c.finish(resp, hr, start, token)
	}
	resp.Status = hr.StatusCode
	resp.RequestID = hr.Header.Get("request-id")
	resp.Date, _ = http.ParseTime(hr.Header.Get("Date"))
	body, err := io.ReadAll(io.LimitReader(hr.Body, maxReadBody+1))
	resp.Duration = time.Since(start)
	switch {
	case err != nil:
		return resp, &APIError{Status: hr.StatusCode, RequestID: resp.RequestID, ClientRequestID: resp.ClientRequestID, Err: err, class: ErrTransient}
	case len(body) > maxReadBody:
		return resp, &APIError{Status: hr.StatusCode, RequestID: resp.RequestID, ClientRequestID: resp.ClientRequestID, Message: "response larger than 1 MiB", class: ErrPermanent}
	}
	if err := json.Unmarshal(body, into); err != nil {
		return resp, &APIError{Status: hr.StatusCode, RequestID: resp.RequestID, ClientRequestID: resp.ClientRequestID, Message: "response is not the JSON expected: " + wire.Truncate(err.Error(), 200), Err: errors.New("decode"), class: ErrPermanent}
	}
	return resp, nil
}
