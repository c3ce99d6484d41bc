package console

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/recoverpasscode/recoverpasscode/batch"
	"github.com/recoverpasscode/recoverpasscode/scan"
	"github.com/recoverpasscode/recoverpasscode/wire"
)

// Bounds of the batch pages.
const (
	maxBatchResults = 200_000
	// maxQueuedScan bounds the jobs waiting in the queue that a batch's
	// page looks through to count its rows not done yet.
	maxQueuedScan = 5_000
	maxFailures   = 200
)

// batchRef names one batch: its source and name.
type batchRef struct {
	Source, Name string
	Results      int
}

// batches lists the batches that have results, by the subjects the
// results stream holds for them (<prefix>.results.<source>.<batch>.<job>).
func (s *Server) batches(w http.ResponseWriter, r *http.Request, sess *session) {
	ctx, cancel := s.ctx(r)
	defer cancel()
	st, err := s.js.Stream(ctx, s.names.ResultsStream())
	if err != nil {
		s.unavailable(w, r, sess, "results", err)
		return
	}
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(s.names.Result("*", "*.*")))
	if err != nil {
		s.unavailable(w, r, sess, "results", err)
		return
	}
	rows := map[batchRef]map[string]bool{}
	prefix := s.names.Result("", "")
	for subj := range info.State.Subjects {
		parts := strings.Split(strings.TrimPrefix(subj, prefix), ".")
		if len(parts) != 3 {
			continue
		}
		ref := batchRef{Source: parts[0], Name: parts[1]}
		if rows[ref] == nil {
			rows[ref] = map[string]bool{}
		}
		rows[ref][batch.RowID(parts[2])] = true
	}
	list := make([]batchRef, 0, len(rows))
	for ref, ids := range rows {
		ref.Results = len(ids)
		list = append(list, ref)
	}
	sort.Slice(list, func(i, k int) bool {
		if list[i].Source != list[k].Source {
			return list[i].Source < list[k].Source
		}
		return list[i].Name < list[k].Name
	})
	s.render(w, r, sess, http.StatusOK, "batches", "Batches", list)
}

// batchData is one batch's page.
type batchData struct {
	Source, Name string
	Counts       batch.Counts
	Queued       int
	QueuedMore   bool // the queue was longer than maxQueuedScan
	Total        int
	Failures     []wire.Result
	MoreFailures int
	Truncated    bool
}

// Done is the number of rows with a result.
func (b batchData) Done() int { return b.Counts.Done() }

// Bad counts the rows that failed or were rejected.
func (b batchData) Bad() int { return b.Counts.Failed + b.Counts.Rejected }

// Finished reports whether no row of the batch waits in the queue.
func (b batchData) Finished() bool { return b.Queued == 0 && !b.QueuedMore }

func batchRefOf(r *http.Request) (string, string, bool) {
	source, name := r.PathValue("source"), r.PathValue("name")
	return source, name, wire.ValidToken(source) && batch.ValidName(name)
}

// readBatch reads a batch's latest result per row and counts its rows
// still in the queue.
func (s *Server) readBatch(ctx context.Context, source, name string) (batchData, *batch.Outcomes, error) {
	d := batchData{Source: source, Name: name}
	out := batch.NewOutcomes()
	read := 0
	err := s.streams().Forward(ctx, scan.Range{Stream: s.names.ResultsStream(), Filter: batch.ResultsFilter(s.names, source, name), Max: maxBatchResults}, func(m jetstream.Msg) bool {
		var res wire.Result
		if json.Unmarshal(m.Data(), &res) == nil && res.JobID != "" {
			out.Add(res)
			read++
		}
		return true
	})
	if err != nil {
		return d, nil, err
	}
	d.Truncated = read >= maxBatchResults
	d.Counts = out.Counts()
	queued, more, err := s.queuedRows(ctx, source, name, out)
	if err != nil {
		return d, nil, err
	}
	d.Queued, d.QueuedMore = queued, more
	d.Total = d.Done() + d.Queued
	for _, res := range out.Results(nil) {
		if res.Status == wire.Succeeded {
			continue
		}
		if len(d.Failures) == maxFailures {
			d.MoreFailures++
			continue
		}
		d.Failures = append(d.Failures, res)
	}
	return d, out, nil
}

// queuedRows counts the batch's rows whose job waits in the jobs stream
// (queued, in flight or held) and has no result yet. The jobs stream is a
// work queue, which admits no second consumer on the workers' subjects, so
// the jobs are read one by one by direct get, at most maxQueuedScan of
// them.
func (s *Server) queuedRows(ctx context.Context, source, name string, done *batch.Outcomes) (int, bool, error) {
	st, err := s.js.Stream(ctx, s.names.JobsStream())
	if err != nil {
		return 0, false, err
	}
	info, err := st.Info(ctx)
	if err != nil {
		return 0, false, err
	}
	if info.State.Msgs == 0 {
		return 0, false, nil
	}
	prefix := name + "-"
	rows := map[string]bool{}
	seq := info.State.FirstSeq
	for n := 0; n < maxQueuedScan; n++ {
		msg, err := st.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(s.names.Jobs(source)))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return len(rows), false, nil
		}
		if err != nil {
			return 0, false, err
		}
		seq = msg.Sequence + 1
		id := msg.Header.Get(jetstream.MsgIDHeader)
		if !strings.HasPrefix(id, prefix) {
			continue
		}
		if _, ok := done.Get(batch.RowID(id)); !ok {
			rows[batch.RowID(id)] = true
		}
	}
	return len(rows), true, nil
}

// batchOf reads the batch the path names; when it cannot, it answers 404
// or 503 and returns false.
func (s *Server) batchOf(ctx context.Context, w http.ResponseWriter, r *http.Request, sess *session) (batchData, *batch.Outcomes, bool) {
	source, name, ok := batchRefOf(r)
	if !ok {
		s.renderError(w, r, sess, http.StatusNotFound, "That is not a batch.")
		return batchData{}, nil, false
	}
	d, out, err := s.readBatch(ctx, source, name)
	if err != nil {
		s.unavailable(w, r, sess, "batch", err)
		return batchData{}, nil, false
	}
	return d, out, true
}

func (s *Server) batchPage(w http.ResponseWriter, r *http.Request, sess *session) {
	ctx, cancel := s.ctx(r)
	defer cancel()
	d, _, ok := s.batchOf(ctx, w, r, sess)
	if !ok {
		return
	}
	s.render(w, r, sess, http.StatusOK, "batch", "Batch "+d.Name, d)
}

func (s *Server) batchFragment(w http.ResponseWriter, r *http.Request, sess *session) {
	source, name, ok := batchRefOf(r)
	if !ok {
		http.NotFound(w, r)
		return
	}
	ctx, cancel := s.ctx(r)
	defer cancel()
	d, _, err := s.readBatch(ctx, source, name)
	if err != nil {
		http.Error(w, "NATS could not answer", http.StatusServiceUnavailable)
		return
	}
	s.renderFragment(w, sess, "batch", d)
}

// batchCSV downloads the latest result of every row, as
// `enqueue results --batch NAME --output results.csv` writes it.
func (s *Server) batchCSV(w http.ResponseWriter, r *http.Request, sess *session) {
	ctx, cancel := s.ctx(r)
	defer cancel()
	d, out, ok := s.batchOf(ctx, w, r, sess)
	if !ok {
		return
	}
	results := out.Results(nil)
	entries := make([]batch.Entry, len(results))
	for i, res := range results {
		entries[i] = batch.Entry{Result: res}
	}
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="%s-%s-results.csv"`, d.Source, d.Name))
	w.Header().Set("Cache-Control", "no-store")
	if err := batch.WriteResults(w, batch.OutputCSV, entries); err != nil {
		s.log.Warn().Err(err).Msg("console: write a batch's CSV")
	}
}
