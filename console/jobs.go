package console

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/recoverpasscode/recoverpasscode/batch"
	"github.com/recoverpasscode/recoverpasscode/scan"
	"github.com/recoverpasscode/recoverpasscode/wire"
)

// Bounds of the job search.
const (
	searchLimit   = 100
	maxSearchScan = 500_000
	maxAuditScan  = 200_000
	maxJobEvents  = 1000
)

// windows are the time ranges a search may cover.
var windows = []struct{ Value, Label string }{
	{"1h", "last hour"}, {"24h", "last 24 hours"}, {"168h", "last 7 days"}, {"720h", "last 30 days"},
}

// jobQuery is what the search form asks.
type jobQuery struct {
	Ticket, Device, Batch, Source, Status, Within string
	Before                                        uint64
}

func parseJobQuery(q url.Values) (jobQuery, string) {
	f := jobQuery{Ticket: strings.TrimSpace(q.Get("ticket")), Device: strings.TrimSpace(q.Get("device")), Batch: strings.TrimSpace(q.Get("batch")),
		Source: strings.TrimSpace(q.Get("source")), Status: q.Get("status"), Within: q.Get("within")}
	if f.Within == "" {
		f.Within = "24h"
	}
	f.Before, _ = strconv.ParseUint(q.Get("before"), 10, 64)
	switch {
	case len(f.Ticket) > 128:
		return f, "A ticket has at most 128 characters."
	case f.Device != "" && !wire.IsGUID(f.Device):
		return f, "A managed device id is a GUID."
	case f.Batch != "" && !batch.ValidName(f.Batch):
		return f, "A batch name is 1 to 64 letters, digits, '-' or '_'."
	case f.Source != "" && !wire.ValidToken(f.Source):
		return f, "A source is one subject token: letters, digits, '-' or '_'."
	case !slices.ContainsFunc(windows, func(w struct{ Value, Label string }) bool { return w.Value == f.Within }):
		return f, "Choose a time range from the list."
	}
	switch wire.Status(f.Status) {
	case "", wire.Succeeded, wire.Failed, wire.Rejected, wire.Expired:
	default:
		return f, "Choose a status from the list."
	}
	return f, ""
}

// filter is the results subject filter of the query.
func (f jobQuery) filter(names wire.Names) string {
	source := "*"
	if f.Source != "" {
		source = f.Source
	}
	if f.Batch != "" {
		return names.Result(source, f.Batch+".>")
	}
	if f.Source != "" {
		return names.ResultsOf(f.Source)
	}
	return names.ResultsWildcard()
}

func (f jobQuery) matches(r wire.Result) bool {
	return (f.Ticket == "" || r.Ticket == f.Ticket) &&
		(f.Device == "" || strings.EqualFold(r.ManagedDeviceID, f.Device)) &&
		(f.Status == "" || string(r.Status) == f.Status)
}

// Empty reports whether the form was submitted with nothing in it.
func (f jobQuery) Empty() bool {
	return f.Ticket == "" && f.Device == "" && f.Batch == "" && f.Source == "" && f.Status == ""
}

// Next is the query of the following page.
func (f jobQuery) Next(before uint64) string {
	v := url.Values{}
	for k, val := range map[string]string{"ticket": f.Ticket, "device": f.Device, "batch": f.Batch, "source": f.Source, "status": f.Status, "within": f.Within} {
		if val != "" {
			v.Set(k, val)
		}
	}
	v.Set("before", strconv.FormatUint(before, 10))
	return "/jobs?" + v.Encode()
}

type jobsData struct {
	Query   jobQuery
	Windows []struct{ Value, Label string }
	Results []wire.Result
	Next    string
	Problem string
}

// jobs serves the search: the latest results first, within the chosen time.
func (s *Server) jobs(w http.ResponseWriter, r *http.Request, sess *session) {
	q, problem := parseJobQuery(r.URL.Query())
	d := jobsData{Query: q, Windows: windows, Problem: problem}
	if problem != "" {
		s.render(w, r, sess, http.StatusBadRequest, "jobs", "Jobs", d)
		return
	}
	within, _ := time.ParseDuration(q.Within)
	since := time.Now().Add(-within)
	ctx, cancel := s.ctx(r)
	defer cancel()
	seen := map[string]bool{}
	more := false
	next, err := s.streams().Backward(ctx, s.names.ResultsStream(), q.filter(s.names), q.Before, maxSearchScan, func(m jetstream.Msg) bool {
		meta, err := m.Metadata()
		if err == nil && meta.Timestamp.Before(since) {
			return false
		}
		var res wire.Result
		if json.Unmarshal(m.Data(), &res) != nil || res.JobID == "" || seen[res.JobID] || !q.matches(res) {
			return true
		}
		if len(d.Results) == searchLimit {
			more = true
			return false
		}
		seen[res.JobID] = true
		d.Results = append(d.Results, res)
		return true
	})
	if err != nil {
		s.unavailable(w, r, sess, "results", err)
		return
	}
	if more && next > 0 {
		// next is the result the page had no room for: the next page
		// reads up to and including it.
		d.Next = q.Next(next + 1)
	}
	s.render(w, r, sess, http.StatusOK, "jobs", "Jobs", d)
}

type jobData struct {
	ID      string
	Result  *wire.Result
	Events  []wire.AuditEvent
	Calls   int
	Indexed bool
}

// job serves a job's page: its result and its audit trail.
func (s *Server) job(w http.ResponseWriter, r *http.Request, sess *session) {
	id := r.PathValue("id")
	if !wire.ValidID(id) {
		s.renderError(w, r, sess, http.StatusNotFound, "That is not a job id.")
		return
	}
	ctx, cancel := s.ctx(r)
	defer cancel()
	res, err := s.result(ctx, id)
	if err != nil {
		s.unavailable(w, r, sess, "results", err)
		return
	}
	d := jobData{ID: id, Result: res}
	if res != nil {
		d.Events, d.Indexed, err = s.jobEvents(ctx, res)
		if err != nil {
			s.unavailable(w, r, sess, "audit", err)
			return
		}
		for _, e := range d.Events {
			if e.Kind == wire.KindGraphCall {
				d.Calls++
			}
		}
	}
	status := http.StatusOK
	if res == nil {
		status = http.StatusNotFound
	}
	s.render(w, r, sess, status, "job", "Job "+id, d)
}

// result is the latest stored result of a job id, of any source, batch
// or not; nil when there is none.
func (s *Server) result(ctx context.Context, id string) (*wire.Result, error) {
	st, err := s.js.Stream(ctx, s.names.ResultsStream())
	if err != nil {
		return nil, err
	}
	for _, subj := range []string{s.names.Result("*", id), s.names.Result("*", "*."+id)} {
		msg, err := st.GetLastMsgForSubject(ctx, subj)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		var res wire.Result
		if err := json.Unmarshal(msg.Data, &res); err != nil {
			return nil, err
		}
		return &res, nil
	}
	return nil, nil
}

// jobEvents are a job's audit events, oldest first: from the device index
// when there is one, else from the device's audit subjects since the job
// was queued.
func (s *Server) jobEvents(ctx context.Context, res *wire.Result) ([]wire.AuditEvent, bool, error) {
	var out []wire.AuditEvent
	if s.cfg.History != nil && res.TenantID != "" && res.ManagedDeviceID != "" {
		events, err := s.cfg.History.Device(ctx, res.TenantID, res.ManagedDeviceID, maxJobEvents)
		if err != nil {
			return nil, true, err
		}
		for i := len(events) - 1; i >= 0; i-- {
			if events[i].JobID == res.JobID {
				out = append(out, events[i])
			}
		}
		return out, true, nil
	}
	since := res.QueuedAt.Add(-time.Minute)
	if res.QueuedAt.IsZero() {
		since = res.FinishedAt.Add(-time.Hour)
	}
	err := s.streams().Forward(ctx, scan.Range{Stream: s.names.AuditStream(), Filter: s.names.AuditOfDevice(res.TenantID, res.ManagedDeviceID), StartTime: since, Max: maxAuditScan}, func(m jetstream.Msg) bool {
		var e wire.AuditEvent
		if json.Unmarshal(m.Data(), &e) == nil && e.JobID == res.JobID {
			out = append(out, e)
		}
		return len(out) < maxJobEvents
	})
	return out, false, err
}
