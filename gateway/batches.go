package gateway

import (
	"encoding/json"
	"net/http"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/recoverpasscode/recoverpasscode/batch"
	"github.com/recoverpasscode/recoverpasscode/scan"
	"github.com/recoverpasscode/recoverpasscode/wire"
)

// MaxBatchResults bounds the results GET /v1/batches/{name} reads; a batch
// with more is answered with the counts of the first ones and truncated.
const MaxBatchResults = 200_000

// batchCounts is the answer of GET /v1/batches/{name}: the latest result
// of each row counted by status, as `enqueue results --batch` counts them.
type batchCounts struct {
	Batch  string `json:"batch"`
	Source string `json:"source"`
	// Results is the number of rows with a result.
	Results   int `json:"results"`
	Succeeded int `json:"succeeded"`
	Failed    int `json:"failed"`
	Rejected  int `json:"rejected"`
	Expired   int `json:"expired"`
	// Other counts statuses this version does not know.
	Other int `json:"other"`
	// Replayed rows were answered from an earlier job's record; Uncertain
	// ones may have had the action run twice.
	Replayed  int `json:"replayed"`
	Uncertain int `json:"uncertain"`
	// Truncated is true when the batch holds more than MaxBatchResults
	// results: the counts are of the first ones only.
	Truncated bool `json:"truncated,omitempty"`
}

// rowOutcome is what the counts need of a row's latest result.
type rowOutcome struct {
	status              wire.Status
	replayed, uncertain bool
}

// getBatch serves GET /v1/batches/{name} for the caller's source.
func (s *Server) getBatch(w http.ResponseWriter, r *http.Request) {
	source := infoOf(r.Context()).source
	name := r.PathValue("name")
	if !batch.ValidName(name) {
		writeProblem(w, r, notFound("no batch %q: a batch name is 1 to 64 letters, digits, '-' or '_'", wire.Truncate(name, 64)).p)
		return
	}
	rows := map[string]rowOutcome{}
	read := 0
	filter := batch.ResultsFilter(s.names, source, name)
	err := s.store.read(r.Context(), scan.Range{Stream: s.names.ResultsStream(), Filter: filter}, func(m jetstream.Msg) bool {
		var res wire.Result
		if json.Unmarshal(m.Data(), &res) != nil || res.JobID == "" {
			return true
		}
		read++
		rows[batch.RowID(res.JobID)] = rowOutcome{res.Status, res.Replayed, res.Uncertain} // the later result of a row counts
		return read < MaxBatchResults
	})
	if err != nil {
		writeProblem(w, r, unavailable(err).p)
		return
	}
	if len(rows) == 0 {
		writeProblem(w, r, notFound("source %s has no result for batch %s (%s): check the name; results are kept 30 days", source, name, filter).p)
		return
	}
	out := batchCounts{Batch: name, Source: source, Results: len(rows), Truncated: read >= MaxBatchResults}
	for _, o := range rows {
		switch o.status {
		case wire.Succeeded:
			out.Succeeded++
		case wire.Failed:
			out.Failed++
		case wire.Rejected:
			out.Rejected++
		case wire.Expired:
			out.Expired++
		default:
			out.Other++
		}
		if o.replayed {
			out.Replayed++
		}
		if o.uncertain {
			out.Uncertain++
		}
	}
	writeJSON(w, http.StatusOK, out)
}
