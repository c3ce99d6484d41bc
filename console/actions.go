package console

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/recoverpasscode/recoverpasscode/quota"
	"github.com/recoverpasscode/recoverpasscode/ratelimit"
	"github.com/recoverpasscode/recoverpasscode/wire"
)

// consoleSource is the source token of the audit events of actions that
// concern no source (a tenant's pause).
const consoleSource = "console"

// maxPause bounds an operator's pause; the limits bucket forgets keys
// after its TTL anyway.
const maxPause = 24 * time.Hour

// audit publishes an operator action as an audit event naming the person,
// and logs it. A failure to publish is logged: the action has been taken.
func (s *Server) audit(ctx context.Context, sess *session, e wire.AuditEvent) {
	e.Operator, e.Worker, e.At = sess.who(), s.cfg.Name, time.Now().UTC()
	if e.Source == "" {
		e.Source = consoleSource
	}
	data, err := json.Marshal(e)
	if err == nil {
		m := nats.NewMsg(s.auditSubject(e))
		m.Data = data
		pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.Timeout)
		_, err = s.js.PublishMsg(pctx, m)
		cancel()
	}
	ev := s.log.Info()
	if err != nil {
		ev = s.log.Error().Err(err)
	}
	ev.Str("kind", e.Kind).Str("operator", e.Operator).Str("job_id", e.JobID).Str("tenant_id", e.TenantID).Str("reason", e.Reason).Msg("operator action")
}

// auditSubject is where an event is published: the subject of the
// workers' events of the same job, so the device's history holds it.
func (s *Server) auditSubject(e wire.AuditEvent) string {
	return s.names.Audit(e.Source, e.TenantID, e.ManagedDeviceID, e.At)
}

// heldPage lists the held jobs, oldest first.
func (s *Server) heldPage(w http.ResponseWriter, r *http.Request, sess *session) {
	ctx, cancel := s.ctx(r)
	defer cancel()
	kv, ok := s.limitsBucket(ctx, w, r, sess)
	if !ok {
		return
	}
	source := strings.TrimSpace(r.URL.Query().Get("source"))
	if source != "" && !wire.ValidToken(source) {
		s.renderError(w, r, sess, http.StatusBadRequest, "A source is one subject token.")
		return
	}
	jobs, err := quota.New(s.js, kv, nil).List(ctx, source)
	if err != nil {
		s.unavailable(w, r, sess, "held jobs", err)
		return
	}
	s.render(w, r, sess, http.StatusOK, "held", "Held jobs", struct {
		Source string
		Jobs   []quota.Held
	}{source, jobs})
}

// release releases one held job (source and id) or all of a source's.
func (s *Server) release(w http.ResponseWriter, r *http.Request, sess *session) {
	source, id := r.PostForm.Get("source"), r.PostForm.Get("id")
	if !wire.ValidToken(source) || (id != "" && !wire.ValidID(id)) {
		s.renderError(w, r, sess, http.StatusBadRequest, "Say which held job to release.")
		return
	}
	ctx, cancel := s.ctx(r)
	defer cancel()
	kv, ok := s.limitsBucket(ctx, w, r, sess)
	if !ok {
		return
	}
	store := quota.New(s.js, kv, nil)
	jobs, err := store.List(ctx, source)
	if err != nil {
		s.unavailable(w, r, sess, "held jobs", err)
		return
	}
	released := 0
	for _, h := range jobs {
		if (id != "" && h.JobID != id) || h.Released {
			continue
		}
		if _, err := store.Release(ctx, h.Source, h.JobID, sess.who()); err != nil {
			if errors.Is(err, quota.ErrNotHeld) {
				continue
			}
			s.unavailable(w, r, sess, "release", err)
			return
		}
		released++
		s.audit(ctx, sess, wire.AuditEvent{Kind: wire.KindOperatorRelease, JobID: h.JobID, IdempotencyKey: h.IdempotencyKey, Source: h.Source,
			TenantID: h.TenantID, ManagedDeviceID: h.ManagedDeviceID, Ticket: h.Ticket, RequestedBy: h.RequestedBy,
			Reason: "released over the source's budget " + h.Budget})
	}
	http.Redirect(w, r, fmt.Sprintf("/held?released=%d", released), http.StatusSeeOther)
}

// pause pauses a tenant's Graph calls for an app, fleet-wide.
func (s *Server) pause(w http.ResponseWriter, r *http.Request, sess *session) {
	app, tenant := r.PostForm.Get("app"), r.PostForm.Get("tenant")
	d, err := time.ParseDuration(r.PostForm.Get("for"))
	if app == "" || tenant == "" || len(app) > 128 || len(tenant) > 256 || err != nil || d <= 0 || d > maxPause {
		s.renderError(w, r, sess, http.StatusBadRequest, "Say which tenant to pause, and for how long (at most 24h).")
		return
	}
	ctx, cancel := s.ctx(r)
	defer cancel()
	kv, ok := s.limitsBucket(ctx, w, r, sess)
	if !ok {
		return
	}
	until := time.Now().Add(d)
	if err := ratelimit.PauseTenant(ctx, kv, app, tenant, until, "operator "+sess.UPN); err != nil {
		s.unavailable(w, r, sess, "pause", err)
		return
	}
	s.forgetOverview()
	s.audit(ctx, sess, wire.AuditEvent{Kind: wire.KindOperatorPause, TenantID: tenant,
		Reason: fmt.Sprintf("paused app %s until %s", app, until.UTC().Format(time.RFC3339))})
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// resume lifts a tenant's pause for an app.
func (s *Server) resume(w http.ResponseWriter, r *http.Request, sess *session) {
	app, tenant := r.PostForm.Get("app"), r.PostForm.Get("tenant")
	if app == "" || tenant == "" || len(app) > 128 || len(tenant) > 256 {
		s.renderError(w, r, sess, http.StatusBadRequest, "Say which tenant to resume.")
		return
	}
	ctx, cancel := s.ctx(r)
	defer cancel()
	kv, ok := s.limitsBucket(ctx, w, r, sess)
	if !ok {
		return
	}
	if err := ratelimit.ResumeTenant(ctx, kv, app, tenant); err != nil {
		s.unavailable(w, r, sess, "resume", err)
		return
	}
	s.forgetOverview()
	s.audit(ctx, sess, wire.AuditEvent{Kind: wire.KindOperatorResume, TenantID: tenant, Reason: "resumed app " + app})
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// forgetOverview drops the cached overview, so an action shows at once.
func (s *Server) forgetOverview() {
	s.mu.Lock()
	s.overviewCache = nil
	s.mu.Unlock()
}

// limitsBucket is the limits bucket; when NATS cannot give it, it answers
// 503 and returns false.
func (s *Server) limitsBucket(ctx context.Context, w http.ResponseWriter, r *http.Request, sess *session) (jetstream.KeyValue, bool) {
	kv, err := s.limits(ctx)
	if err != nil {
		s.unavailable(w, r, sess, "limits bucket", err)
		return nil, false
	}
	return kv, true
}
