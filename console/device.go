package console

import (
	"net/http"
	"strings"

	"github.com/recoverpasscode/recoverpasscode/wire"
)

// maxDeviceEvents is how many of a device's events its page shows.
const maxDeviceEvents = 500

type deviceData struct {
	TenantID, DeviceID string
	Events             []wire.AuditEvent
	Jobs               int
	Indexed            bool
}

// deviceLookup is the form that finds a device's history.
func (s *Server) deviceLookup(w http.ResponseWriter, r *http.Request, sess *session) {
	q := r.URL.Query()
	tenant, device := strings.TrimSpace(q.Get("tenant")), strings.TrimSpace(q.Get("device"))
	if device != "" {
		if tenant == "" {
			tenant = s.cfg.TenantID
		}
		if wire.IsGUID(tenant) && wire.IsGUID(device) {
			http.Redirect(w, r, "/devices/"+strings.ToLower(tenant)+"/"+strings.ToLower(device), http.StatusSeeOther)
			return
		}
	}
	d := deviceData{TenantID: s.cfg.TenantID, Indexed: s.cfg.History != nil}
	status := http.StatusOK
	if device != "" {
		status = http.StatusBadRequest
	}
	s.render(w, r, sess, status, "device", "Devices", d)
}

// device is a device's history: every job and Graph call for it across
// sources, newest first, from the history index.
func (s *Server) device(w http.ResponseWriter, r *http.Request, sess *session) {
	tenant, device := r.PathValue("tenant"), r.PathValue("device")
	if !wire.IsGUID(tenant) || !wire.IsGUID(device) {
		s.renderError(w, r, sess, http.StatusNotFound, "A tenant and a managed device are GUIDs.")
		return
	}
	d := deviceData{TenantID: tenant, DeviceID: device, Indexed: s.cfg.History != nil}
	if s.cfg.History != nil {
		ctx, cancel := s.ctx(r)
		defer cancel()
		events, err := s.cfg.History.Device(ctx, tenant, device, maxDeviceEvents)
		if err != nil {
			s.unavailable(w, r, sess, "device history", err)
			return
		}
		d.Events = events
		jobs := map[string]bool{}
		for _, e := range events {
			jobs[e.JobID] = true
		}
		d.Jobs = len(jobs)
	}
	s.render(w, r, sess, http.StatusOK, "device", "Device "+device, d)
}
