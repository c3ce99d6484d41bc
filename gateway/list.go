package gateway

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
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

// Bounds of GET /v1/jobs, documented in the OpenAPI description.
const (
	// DefaultListLimit and MaxListLimit bound the jobs of one page.
	DefaultListLimit = 50
	MaxListLimit     = 200
	// MaxListScan is how many stored results of all sources one page
	// examines at most, newest first, before it answers with what it found
	// and a cursor to go on from there.
	MaxListScan = 100_000
)

// listFilter is what GET /v1/jobs selects.
type listFilter struct {
	ticket, device, batch, status string
}

func (f listFilter) matches(ticket, device string, status string) bool {
	return (f.ticket == "" || f.ticket == ticket) &&
		(f.device == "" || strings.EqualFold(f.device, device)) &&
		(f.status == "" || f.status == status)
}

// hash binds a cursor to the filters it was made for.
func (f listFilter) hash() string {
	sum := sha256.Sum256([]byte(f.ticket + "\x00" + strings.ToLower(f.device) + "\x00" + f.batch + "\x00" + f.status))
	return hex.EncodeToString(sum[:8])
}

// cursor is where the next page starts; opaque to callers (base64url JSON).
type cursor struct {
	// Phase is "q" while listing jobs still queued, "r" in the results.
	Phase string `json:"p"`
	// At and ID are the last queued job listed: the next is older.
	At int64  `json:"t,omitempty"`
	ID string `json:"i,omitempty"`
	// Seq: the next results are stored before this sequence.
	Seq    uint64 `json:"s,omitempty"`
	Filter string `json:"f"`
}

func (c cursor) encode() string {
	b, _ := json.Marshal(c)
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeCursor(s string, f listFilter) (cursor, *problemError) {
	var c cursor
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err == nil {
		err = json.Unmarshal(b, &c)
	}
	if err != nil || (c.Phase != "q" && c.Phase != "r") {
		return c, newProblem(ProblemInvalidRequest, http.StatusBadRequest, "cursor: not a cursor this gateway made: pass the next value of the previous page as it is")
	}
	if c.Filter != f.hash() {
		return c, newProblem(ProblemInvalidRequest, http.StatusBadRequest, "cursor: it was made for other filters: keep ticket, device, batch and status as they were on the first page")
	}
	return c, nil
}

// jobList is the answer of GET /v1/jobs.
type jobList struct {
	// Jobs are queued jobs (newest submission first), then finished ones
	// (latest result first).
	Jobs []any `json:"jobs"`
	// Next continues the list; absent on the last page.
	Next string `json:"next,omitempty"`
}

func parseListQuery(q url.Values) (listFilter, int, *problemError) {
	f := listFilter{ticket: q.Get("ticket"), device: q.Get("device"), batch: q.Get("batch"), status: q.Get("status")}
	bad := func(format string, args ...any) (listFilter, int, *problemError) {
		return f, 0, newProblem(ProblemInvalidRequest, http.StatusBadRequest, format, args...)
	}
	if len(f.ticket) > 128 {
		return bad("ticket: at most 128 characters")
	}
	if f.device != "" && !wire.IsGUID(f.device) {
		return bad("device: a managed device id is a GUID")
	}
	if f.batch != "" && !batch.ValidName(f.batch) {
		return bad("batch: a batch name is 1 to 64 letters, digits, '-' or '_'")
	}
	switch wire.Status(f.status) {
	case "", statusQueued, wire.Succeeded, wire.Failed, wire.Rejected, wire.Expired:
	default:
		return bad("status: one of queued, succeeded, failed, rejected, expired")
	}
	limit := DefaultListLimit
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxListLimit {
			return bad("limit: a number from 1 to %d", MaxListLimit)
		}
		limit = n
	}
	return f, limit, nil
}

// listJobs serves GET /v1/jobs.
func (s *Server) listJobs(w http.ResponseWriter, r *http.Request) {
	source := infoOf(r.Context()).source
	f, limit, perr := parseListQuery(r.URL.Query())
	if perr != nil {
		writeProblem(w, r, perr.p)
		return
	}
	c := cursor{Phase: "q", Filter: f.hash()}
	if v := r.URL.Query().Get("cursor"); v != "" {
		if c, perr = decodeCursor(v, f); perr != nil {
			writeProblem(w, r, perr.p)
			return
		}
	}
	out := jobList{Jobs: []any{}}
	if c.Phase == "q" && f.batch == "" && (f.status == "" || f.status == statusQueued) {
		items, more, err := s.queuedJobs(r.Context(), source, f, c, limit)
		if err != nil {
			writeProblem(w, r, unavailable(err).p)
			return
		}
		for _, q := range items {
			out.Jobs = append(out.Jobs, q)
		}
		if more {
			last := items[len(items)-1]
			out.Next = cursor{Phase: "q", At: last.SubmittedAt.UnixNano(), ID: last.JobID, Filter: c.Filter}.encode()
			writeJSON(w, http.StatusOK, out)
			return
		}
		c = cursor{Phase: "r", Filter: c.Filter}
		if len(out.Jobs) == limit && f.status != statusQueued {
			out.Next = c.encode() // the finished jobs follow on the next page
			writeJSON(w, http.StatusOK, out)
			return
		}
	}
	if f.status != statusQueued && len(out.Jobs) < limit {
		results, next, err := s.finishedJobs(r.Context(), source, f, c.Seq, limit-len(out.Jobs))
		if err != nil {
			writeProblem(w, r, unavailable(err).p)
			return
		}
		for _, res := range results {
			out.Jobs = append(out.Jobs, res)
		}
		if next > 0 {
			out.Next = cursor{Phase: "r", Seq: next, Filter: c.Filter}.encode()
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// queuedJobs lists the source's jobs that the gateway submitted and that
// have no result yet, newest first, after the cursor. It reads every
// record of the source in the requests bucket (a record lives the bucket's
// TTL, 24 h by default: queue.Setup.RequestsTTL) and the subjects of the
// results stored since the oldest of them: its cost grows with the jobs
// the source submitted over HTTP in that time.
func (s *Server) queuedJobs(ctx context.Context, source string, f listFilter, c cursor, limit int) ([]queued, bool, error) {
	var recs []request
	bucket := s.names.RequestsBucket()
	err := s.store.read(ctx, scan.Range{Stream: "KV_" + bucket, Filter: "$KV." + bucket + "." + source + ".*"}, func(m jetstream.Msg) bool {
		var rec request
		if m.Headers().Get("KV-Operation") != "" || json.Unmarshal(m.Data(), &rec) != nil {
			return true // a deleted record, or not one
		}
		if f.matches(rec.Ticket, rec.ManagedDeviceID, statusQueued) && rec.Source == source {
			recs = append(recs, rec)
		}
		return true
	})
	if err != nil || len(recs) == 0 {
		return nil, false, err
	}
	oldest := recs[0].SubmittedAt
	for _, rec := range recs {
		if rec.SubmittedAt.Before(oldest) {
			oldest = rec.SubmittedAt
		}
	}
	done := map[string]bool{}
	err = s.store.read(ctx, scan.Range{Stream: s.names.ResultsStream(), Filter: s.names.Result(source, "*"), StartTime: oldest.Add(-time.Minute), HeadersOnly: true}, func(m jetstream.Msg) bool {
		subj := m.Subject()
		done[subj[strings.LastIndexByte(subj, '.')+1:]] = true
		return true
	})
	if err != nil {
		return nil, false, err
	}
	var out []queued
	for _, rec := range recs {
		if done[rec.JobID] || (c.ID != "" && !olderThan(rec, c)) {
			continue
		}
		out = append(out, queuedOf(rec))
	}
	slices.SortFunc(out, func(a, b queued) int {
		if d := b.SubmittedAt.Compare(a.SubmittedAt); d != 0 {
			return d
		}
		return strings.Compare(b.JobID, a.JobID)
	})
	if len(out) > limit {
		return out[:limit], true, nil
	}
	return out, false, nil
}

// olderThan reports whether rec comes after the cursor's job in the list.
func olderThan(rec request, c cursor) bool {
	at := rec.SubmittedAt.UnixNano()
	return at < c.At || (at == c.At && rec.JobID < c.ID)
}

// finishedJobs lists the source's stored results, latest first, stored
// before sequence before (0: the end), filtered. It reads backwards in
// growing windows of the results stream (scan.Reader.Backward), and stops
// once it has limit results or has examined MaxListScan sequences; next is
// where the following page starts, 0 at the start of the stream.
func (s *Server) finishedJobs(ctx context.Context, source string, f listFilter, before uint64, limit int) (out []wire.Result, next uint64, err error) {
	if err := s.store.connected(); err != nil {
		return nil, 0, err
	}
	filter := s.names.Result(source, ">")
	if f.batch != "" {
		filter = batch.ResultsFilter(s.names, source, f.batch)
	}
	seen := map[string]bool{}
	next, err = s.store.streams().Backward(ctx, s.names.ResultsStream(), filter, before, MaxListScan, func(m jetstream.Msg) bool {
		var res wire.Result
		if json.Unmarshal(m.Data(), &res) != nil || res.JobID == "" || seen[res.JobID] || !f.matches(res.Ticket, res.ManagedDeviceID, string(res.Status)) {
			return true
		}
		seen[res.JobID] = true
		out = append(out, res)
		return len(out) < limit
	})
	if err != nil {
		return nil, 0, s.store.wrap(err)
	}
	return out, next, nil
}
