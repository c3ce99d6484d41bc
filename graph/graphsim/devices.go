package graphsim

import (
	"encoding/json"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Device is a managed device the Server knows by its other names, for
// $filter on azureADDeviceId and serialNumber (AddDevice). A device that was
// never added still exists for recoverPasscode and for a read by its id, as
// every well-formed GUID does, with a name derived from its id.
type Device struct {
	// ID is the Intune managed device id, a GUID. Required.
	ID string
	// AzureADDeviceID is its Entra ID device id.
	AzureADDeviceID string
	// SerialNumber is its hardware serial number.
	SerialNumber string
	// DeviceName is its name; defaults to "DEV-" and the id's first block.
	DeviceName string
}

// action is one recoverPasscode action Intune holds for a device: pending
// until the device checks in, delay after it started, and then state (""
// for a device that never checks in). Guarded by Server.mu.
type action struct {
	start time.Time
	delay time.Duration
	state string
}

// checkIn is how a device carries out the actions sent to it.
type checkIn struct {
	delay time.Duration
	state string
}

// devices is what the Server knows of managed devices beyond their ids.
// Guarded by Server.mu.
type devices struct {
	byID     map[string]*Device
	actions  map[string][]action // by lower-case device id
	checkIns map[string]checkIn  // by lower-case device id
	reads    *limiter
}

func newDevices(cfg Config) devices {
	return devices{
		byID:     map[string]*Device{},
		actions:  map[string][]action{},
		checkIns: map[string]checkIn{},
		reads:    newLimiter(cfg.ReadLimit, -1, cfg.Window),
	}
}

// AddDevice registers d, or replaces what the Server knew of d.ID.
func (s *Server) AddDevice(d Device) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d.ID = strings.ToLower(d.ID)
	s.devs.byID[d.ID] = &d
}

// SetDeviceCheckIn makes deviceID carry out the actions sent to it from now
// on delay after each starts, ending them in state ("done", "failed",
// "canceled", "notSupported"); an empty state means it never checks in and
// its actions stay pending. It overrides Config.CheckIn for that device.
func (s *Server) SetDeviceCheckIn(deviceID string, delay time.Duration, state string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.devs.checkIns[strings.ToLower(deviceID)] = checkIn{delay, state}
}

// performLocked records a recoverPasscode action on deviceID at now, to be
// carried out as its check-in says.
func (s *Server) performLocked(deviceID string, now time.Time) {
	id := strings.ToLower(deviceID)
	ci, ok := s.devs.checkIns[id]
	if !ok {
		ci.delay, ci.state = s.cfg.CheckIn(id)
	}
	s.devs.actions[id] = append(s.devs.actions[id], action{start: now, delay: ci.delay, state: ci.state})
}

// filterRE is the one filter the Server understands on managedDevices: an
// equality of azureADDeviceId or serialNumber with one OData string
// literal, in which a quote is doubled.
var filterRE = regexp.MustCompile(`^(azureADDeviceId|serialNumber) eq '((?:[^']|'')*)'$`)

// read is a parsed GET: a filter on the collection, or one device.
type read struct {
	deviceID string // "" for the collection
	field    string
	value    string
	errResp  *graphResponse
}

// parseRead parses a GET of managedDevices or of one managed device, with
// the query options Graph would accept from this service.
func parseRead(escaped string, q url.Values) read {
	segs, ok := splitEscapedPath(escaped)
	if !ok || len(segs) < 3 || (!strings.EqualFold(segs[0], "v1.0") && !strings.EqualFold(segs[0], "beta")) {
		return read{errResp: notFound("Invalid version or resource path.")}
	}
	p := segs[1:]
	switch {
	case matchSegs(p, "deviceManagement", "managedDevices"):
		m := filterRE.FindStringSubmatch(q.Get("$filter"))
		if len(q["$filter"]) != 1 || m == nil {
			return read{errResp: badRequest("Invalid filter clause: only azureADDeviceId or serialNumber eq '<value>' is supported here.")}
		}
		return read{field: m[1], value: strings.ReplaceAll(m[2], "''", "'")}
	case matchSegs(p, "deviceManagement", "managedDevices", "*"):
		if !validGUID(p[2]) {
			return read{errResp: badRequest("Invalid key for managedDevices: '" + p[2] + "' is not a valid GUID.")}
		}
		return read{deviceID: strings.ToLower(p[2])}
	}
	return read{errResp: notFound("Resource not found for the segment '" + lastSegment(segs) + "'.")}
}

func validGUID(s string) bool { return guidRE.MatchString(s) }

var guidRE = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// serveRead answers a GET: authentication, the route, the read limit
// (Config.ReadLimit, separate from recoverPasscode's), then the device or
// the filtered collection. Reads take no faults.
func (s *Server) serveRead(w http.ResponseWriter, r *http.Request) {
	c := Call{
		Time:            time.Now(),
		Method:          r.Method,
		Path:            r.URL.EscapedPath(),
		RequestID:       newGUID(),
		ClientRequestID: r.Header.Get("client-request-id"),
	}
	if c.ClientRequestID == "" {
		c.ClientRequestID = newGUID()
	}
	token, hasToken := bearerToken(r)
	rd := parseRead(r.URL.EscapedPath(), r.URL.Query())
	c.DeviceID = rd.deviceID
	s.mu.Lock()
	g := s.tokens.access[token]
	if g != nil {
		c.TenantID, c.AppID, c.Delegated = g.tenantID, g.appID, g.user != nil
	}
	c.Time = time.Now()
	var resp graphResponse
	var body any
	switch {
	case !hasToken:
		resp = graphResponse{status: http.StatusUnauthorized, code: "InvalidAuthenticationToken", message: "Access token is empty."}
	case g == nil:
		resp = graphResponse{status: http.StatusUnauthorized, code: "InvalidAuthenticationToken", message: "Access token validation failure. Invalid audience."}
	case c.Time.After(g.expires):
		resp = graphResponse{status: http.StatusUnauthorized, code: "InvalidAuthenticationToken", message: "Lifetime validation failed, the token is expired."}
	case rd.errResp != nil:
		resp = *rd.errResp
	default:
		if ok, wait := s.devs.reads.admitLocked(g.tenantID, g.appID, c.Time); !ok {
			c.LimitRejected = true
			resp = graphResponse{status: http.StatusTooManyRequests, code: "TooManyRequests",
				message:    "Too many requests. The read limit for this app in this tenant has been reached.",
				retryAfter: strconv.FormatInt(retryAfterSeconds(wait), 10)}
			break
		}
		if rd.deviceID != "" && s.dir.missing[rd.deviceID] {
			resp = *notFound("The managed device '" + rd.deviceID + "' was not found.")
			break
		}
		resp = graphResponse{status: http.StatusOK}
		if rd.deviceID != "" {
			body = s.deviceLocked(rd.deviceID, c.Time)
		} else {
			body = s.filterLocked(rd.field, rd.value)
		}
	}
	c.Status, c.ErrorCode = resp.status, resp.code
	s.recordLocked(c)
	s.mu.Unlock()
	s.cfg.Logf("graphsim: graph %s %s tenant=%s app=%s status=%d code=%s limited=%t", c.Method, c.Path, c.TenantID, c.AppID, c.Status, c.ErrorCode, c.LimitRejected)
	if resp.status != http.StatusOK {
		s.answer(w, r, &c, resp)
		return
	}
	if !s.wait(r, time.Duration(s.latency.Load())) {
		panic(http.ErrAbortHandler)
	}
	data, err := json.Marshal(body)
	if err != nil {
		http.Error(w, "graphsim: encode", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("request-id", c.RequestID)
	h.Set("client-request-id", c.ClientRequestID)
	h.Set("Date", time.Now().UTC().Format(http.TimeFormat))
	h.Set("Content-Type", "application/json")
	_, _ = w.Write(data)
}

// filterLocked lists the ids of the devices whose field equals value
// (serial numbers compare case-insensitively, as Intune's do).
func (s *Server) filterLocked(field, value string) map[string]any {
	ids := []map[string]string{}
	for _, d := range s.devs.byID {
		v := d.AzureADDeviceID
		if field == "serialNumber" {
			v = d.SerialNumber
		}
		if v != "" && strings.EqualFold(v, value) {
			ids = append(ids, map[string]string{"id": d.ID})
		}
	}
	return map[string]any{
		"@odata.context": s.GraphURL() + "/$metadata#deviceManagement/managedDevices(id)",
		"value":          ids,
	}
}

// deviceLocked is the device's name, last check-in and action results at
// now, each action's state as its check-in makes it by then.
func (s *Server) deviceLocked(id string, now time.Time) map[string]any {
	name := "DEV-" + strings.ToUpper(id[:8])
	if d := s.devs.byID[id]; d != nil && d.DeviceName != "" {
		name = d.DeviceName
	}
	var lastSync time.Time
	results := []map[string]any{}
	for _, a := range s.devs.actions[id] {
		state, updated := "pending", a.start
		if a.state != "" && !now.Before(a.start.Add(a.delay)) {
			state, updated = a.state, a.start.Add(a.delay)
			lastSync = later(lastSync, updated)
		}
		results = append(results, map[string]any{
			"actionName":          "recoverPasscode",
			"actionState":         state,
			"startDateTime":       a.start.UTC().Format(time.RFC3339Nano),
			"lastUpdatedDateTime": updated.UTC().Format(time.RFC3339Nano),
		})
	}
	out := map[string]any{
		"@odata.context":      s.GraphURL() + "/$metadata#deviceManagement/managedDevices(deviceActionResults,deviceName,lastSyncDateTime)/$entity",
		"deviceName":          name,
		"deviceActionResults": results,
	}
	if !lastSync.IsZero() {
		out["lastSyncDateTime"] = lastSync.UTC().Format(time.RFC3339Nano)
	} else {
		out["lastSyncDateTime"] = "0001-01-01T00:00:00Z"
	}
	return out
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// MaxReadsInWindow is MaxInWindow for the GETs alone: the largest number of
// reads made with tokens of appID in tenantID within any interval of length
// window.
func (s *Server) MaxReadsInWindow(tenantID, appID string, window time.Duration) int {
	return s.maxInWindow(tenantID, appID, window, func(c Call) bool { return c.Method == http.MethodGet })
}

// MaxWritesInWindow is MaxInWindow for everything but GETs: the calls
// Intune's 200 per 20 s counts.
func (s *Server) MaxWritesInWindow(tenantID, appID string, window time.Duration) int {
	return s.maxInWindow(tenantID, appID, window, func(c Call) bool { return c.Method != http.MethodGet })
}

func (s *Server) maxInWindow(tenantID, appID string, window time.Duration, keep func(Call) bool) int {
	tenantID, appID = strings.ToLower(tenantID), strings.ToLower(appID)
	s.mu.Lock()
	var times []time.Time
	for _, c := range s.log.calls {
		if c.TenantID == tenantID && c.AppID == appID && keep(c) {
			times = append(times, c.Time)
		}
	}
	s.mu.Unlock()
	best, j := 0, 0
	for i := range times {
		for j < len(times) && times[j].Sub(times[i]) < window {
			j++
		}
		best = max(best, j-i)
	}
	return best
}
