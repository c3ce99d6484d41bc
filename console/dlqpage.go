package console

import (
	"context"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/recoverpasscode/recoverpasscode/dlq"
	"github.com/recoverpasscode/recoverpasscode/wire"
)

// maxDLQList bounds the dead letters a DLQ page lists (a replay acts on
// every match, listed or not).
const maxDLQList = 500

// dlqQuery is the DLQ filter of a page or a replay.
type dlqQuery struct {
	dlq.Selector
	// UpTo, in a replay, is the last DLQ sequence the confirmation counted:
	// dead letters that arrived after it are not replayed unseen.
	UpTo            uint64
	NewKey          bool
	IncludeRejected bool
}

// plan is what replaying letters with the query's options does.
func (q dlqQuery) plan(names wire.Names, letters []dlq.Letter) dlq.Plan {
	return dlq.PlanReplays(names, letters, dlq.Options{NewKey: q.NewKey, IncludeRejected: q.IncludeRejected})
}

func parseDLQQuery(v url.Values) (dlqQuery, string) {
	q := dlqQuery{Selector: dlq.Selector{Source: strings.TrimSpace(v.Get("source")), Batch: strings.TrimSpace(v.Get("batch")),
		ID: strings.TrimSpace(v.Get("id")), Device: strings.TrimSpace(v.Get("device")), Status: wire.Status(v.Get("status"))}}
	q.UpTo, _ = strconv.ParseUint(v.Get("upto"), 10, 64)
	q.NewKey = v.Get("key") == "new"
	q.IncludeRejected = v.Get("rejected") == "include"
	if err := q.Check(); err != nil {
		return q, err.Error()
	}
	switch q.Status {
	case "", wire.Failed, wire.Rejected, wire.Expired, wire.Succeeded:
	default:
		return q, "Choose a status from the list."
	}
	return q, ""
}

// Values is the query as form values, for links and hidden fields.
func (q dlqQuery) Values() url.Values {
	v := url.Values{}
	for k, val := range map[string]string{"source": q.Source, "batch": q.Batch, "id": q.ID, "device": q.Device, "status": string(q.Status)} {
		if val != "" {
			v.Set(k, val)
		}
	}
	if q.NewKey {
		v.Set("key", "new")
	}
	if q.IncludeRejected {
		v.Set("rejected", "include")
	}
	return v
}

// Links to the confirmation with one choice changed, and back to the list.
func (q dlqQuery) NewKeyLink() template.URL   { q.NewKey = true; return q.link("/dlq/replay") }
func (q dlqQuery) KeepKeyLink() template.URL  { q.NewKey = false; return q.link("/dlq/replay") }
func (q dlqQuery) RejectedLink() template.URL { q.IncludeRejected = true; return q.link("/dlq/replay") }
func (q dlqQuery) ListLink() template.URL     { return q.link("/dlq") }

// link is path with the query; the values are encoded here, so the
// template must not encode them again.
func (q dlqQuery) link(path string) template.URL {
	return template.URL(path + "?" + q.Values().Encode())
}

// Describe says in words what the filter chooses.
func (q dlqQuery) Describe() string {
	var parts []string
	for _, p := range [][2]string{{"source", q.Source}, {"batch", q.Batch}, {"job", q.ID}, {"device", q.Device}, {"status", string(q.Status)}} {
		if p[1] != "" {
			parts = append(parts, p[0]+" "+p[1])
		}
	}
	if len(parts) == 0 {
		return "every dead letter"
	}
	return "the dead letters of " + strings.Join(parts, ", ")
}

type dlqData struct {
	Query   dlqQuery
	Letters []dlq.Letter
	Total   int
	Problem string
}

// dlqPage lists the dead letters the filter matches, newest first.
func (s *Server) dlqPage(w http.ResponseWriter, r *http.Request, sess *session) {
	q, problem := parseDLQQuery(r.URL.Query())
	d := dlqData{Query: q, Problem: problem}
	if problem == "" {
		ctx, cancel := s.ctx(r)
		defer cancel()
		letters, ok := s.deadLetters(ctx, w, r, sess, q.Selector)
		if !ok {
			return
		}
		d.Total = len(letters)
		for i := len(letters) - 1; i >= 0 && len(d.Letters) < maxDLQList; i-- {
			d.Letters = append(d.Letters, letters[i])
		}
	}
	s.render(w, r, sess, http.StatusOK, "dlq", "Dead letters", d)
}

// confirmData is the confirmation of a replay: what will happen.
type confirmData struct {
	Query dlqQuery
	Plan  dlq.Plan
	UpTo  uint64
	Done  bool
	// Published counts the replays submitted, when Done.
	Published int
	Failed    string
}

// replayConfirm says how many dead letters the filter matches and what
// replaying them will do, with the form that does it.
func (s *Server) replayConfirm(w http.ResponseWriter, r *http.Request, sess *session) {
	q, problem := parseDLQQuery(r.URL.Query())
	if problem != "" {
		s.renderError(w, r, sess, http.StatusBadRequest, problem)
		return
	}
	ctx, cancel := s.ctx(r)
	defer cancel()
	letters, ok := s.deadLetters(ctx, w, r, sess, q.Selector)
	if !ok {
		return
	}
	d := confirmData{Query: q, Plan: q.plan(s.names, letters)}
	for _, l := range letters {
		d.UpTo = max(d.UpTo, l.Seq)
	}
	s.render(w, r, sess, http.StatusOK, "confirm", "Replay dead letters", d)
}

// replay replays the dead letters the filter matched when the person
// confirmed (none newer than UpTo), each an audit event naming them.
func (s *Server) replay(w http.ResponseWriter, r *http.Request, sess *session) {
	q, problem := parseDLQQuery(r.PostForm)
	if problem != "" || q.UpTo == 0 {
		s.renderError(w, r, sess, http.StatusBadRequest, "The replay's form is not complete: start again from the dead letters page.")
		return
	}
	ctx, cancel := s.ctx(r)
	defer cancel()
	letters, ok := s.deadLetters(ctx, w, r, sess, q.Selector)
	if !ok {
		return
	}
	kept := letters[:0]
	for _, l := range letters {
		if l.Seq <= q.UpTo {
			kept = append(kept, l)
		}
	}
	d := confirmData{Query: q, UpTo: q.UpTo, Done: true, Plan: q.plan(s.names, kept)}
	for _, rp := range d.Plan.Replays {
		if err := dlq.Publish(ctx, s.js, rp); err != nil {
			d.Failed = err.Error()
			break
		}
		d.Published++
		key := "same key"
		if q.NewKey {
			key = "new key"
		}
		s.audit(ctx, sess, wire.AuditEvent{Kind: wire.KindOperatorReplay, JobID: rp.Job.ID, IdempotencyKey: rp.Job.IdempotencyKey,
			Source: rp.From.Source, TenantID: rp.Job.TenantID, ManagedDeviceID: rp.Job.ManagedDeviceID, Ticket: rp.Job.Ticket,
			RequestedBy: rp.Job.RequestedBy, Reason: fmt.Sprintf("replay of dead letter #%d (job %s), %s", rp.From.Seq, rp.From.JobID, key)})
	}
	s.log.Info().Str("user", sess.UPN).Int("replayed", d.Published).Int("skipped", len(d.Plan.Skipped)).Str("filter", q.Describe()).Msg("dead letters replayed")
	status := http.StatusOK
	if d.Failed != "" {
		status = http.StatusServiceUnavailable
	}
	s.render(w, r, sess, status, "replayed", "Replayed", d)
}

// deadLetters reads the dead letters sel matches; when NATS cannot give
// them, it answers 503 and returns false.
func (s *Server) deadLetters(ctx context.Context, w http.ResponseWriter, r *http.Request, sess *session, sel dlq.Selector) ([]dlq.Letter, bool) {
	letters, err := dlq.Read(ctx, s.js, s.names, sel)
	if err != nil {
		s.unavailable(w, r, sess, "DLQ", err)
		return nil, false
	}
	return letters, true
}
