package gateway

import (
	"net/http"

	"github.com/recoverpasscode/recoverpasscode/wire"
)

// getJob serves GET /v1/jobs/{id}: the job's result once it exists (with
// its confirmation, for a followed job that has one), else "queued" while
// the gateway's record of it lives ("held" while the workers hold it, its
// source over its budget). The subjects read hold the caller's source, so
// another source's job is simply not found.
func (s *Server) getJob(w http.ResponseWriter, r *http.Request) {
	ri := infoOf(r.Context())
	id := r.PathValue("id")
	if !wire.ValidID(id) {
		writeProblem(w, r, notFound("no job %q: a job id is 1 to 128 letters, digits, '-' or '_'", wire.Truncate(id, 64)).p)
		return
	}
	ri.jobID = id
	res, found, err := s.findResult(r, ri.source, id)
	if err != nil {
		writeProblem(w, r, unavailable(err).p)
		return
	}
	if found {
		view := jobView{Result: res}
		if res.Follow {
			view.Confirmation, err = s.store.confirmation(r.Context(), ri.source, res.JobID)
			if err != nil {
				writeProblem(w, r, unavailable(err).p)
				return
			}
		}
		writeJSON(w, http.StatusOK, view)
		return
	}
	rec, found, err := s.store.lookup(r.Context(), ri.source, id)
	if err != nil {
		writeProblem(w, r, unavailable(err).p)
		return
	}
	if !found {
		writeProblem(w, r, notFound("source %s has no job %s: no result is stored for it (results are kept 30 days) and the gateway did not submit it within its record's lifetime", ri.source, id).p)
		return
	}
	view := queuedOf(rec)
	if until, held := s.heldJob(r.Context(), ri.source, id); held {
		view.Status, view.HeldUntil = statusHeld, until.UTC()
	}
	w.Header().Set("Retry-After", s.retryAfter())
	writeJSON(w, http.StatusOK, view)
}

// jobView is a job's result with, for a followed job, its confirmation
// once the follow has ended (package follow).
type jobView struct {
	wire.Result
	Confirmation *wire.Confirmation `json:"confirmation,omitempty"`
}

// findResult looks for a job's latest result under the caller's source:
// <prefix>.results.<source>.<id>, where the gateway's jobs and most others
// are answered, then <prefix>.results.<source>.*.<id>, where a batch's are.
func (s *Server) findResult(r *http.Request, source, id string) (wire.Result, bool, error) {
	res, found, err := s.store.lastResult(r.Context(), s.names.Result(source, id))
	if err != nil || found {
		return res, found, err
	}
	return s.store.lastResult(r.Context(), s.names.Result(source, "*."+id))
}

func notFound(format string, args ...any) *problemError {
	return newProblem(ProblemNotFound, http.StatusNotFound, format, args...)
}
