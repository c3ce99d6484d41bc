package gateway

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/recoverpasscode/recoverpasscode/wire"
)

// idNamespace is the UUID namespace of job ids derived from (source,
// Idempotency-Key): version 5 UUIDs of "<source>/<key>" in it.
var idNamespace = uuid.NewSHA1(uuid.NameSpaceURL, []byte("https://github.com/recoverpasscode/recoverpasscode/gateway/idempotency-key"))

// JobID is the id of the job a source submits with an Idempotency-Key: a
// UUID (version 5) of the source and the key, the same on every retry.
func JobID(source, key string) string {
	return uuid.NewSHA1(idNamespace, []byte(source+"/"+key)).String()
}

// queued is the state of a job with no result yet.
type queued struct {
	JobID           string    `json:"jobId"`
	Status          string    `json:"status"`
	IdempotencyKey  string    `json:"idempotencyKey,omitempty"`
	Source          string    `json:"source,omitempty"`
	TenantID        string    `json:"tenantId,omitempty"`
	ManagedDeviceID string    `json:"managedDeviceId,omitempty"`
	Ticket          string    `json:"ticket,omitempty"`
	RequestedBy     string    `json:"requestedBy,omitempty"`
	SubmittedAt     time.Time `json:"submittedAt,omitzero"`
	// HeldUntil is, for a held job, when the workers expect its source's
	// budget to have room (an operator may release it sooner).
	HeldUntil time.Time `json:"heldUntil,omitzero"`
}

const statusQueued = "queued"

func queuedOf(rec request) queued {
	return queued{
		JobID: rec.JobID, Status: statusQueued, IdempotencyKey: rec.IdempotencyKey, Source: rec.Source,
		TenantID: rec.TenantID, ManagedDeviceID: rec.ManagedDeviceID, Ticket: rec.Ticket,
		RequestedBy: rec.RequestedBy, SubmittedAt: rec.SubmittedAt,
	}
}

// submit serves POST /v1/jobs.
func (s *Server) submit(w http.ResponseWriter, r *http.Request) {
	ri := infoOf(r.Context())
	outcome := submitInvalid
	defer func() { s.metrics.submissions.WithLabelValues(ri.source, outcome).Inc() }()

	body, perr := readBody(w, r)
	if perr != nil {
		writeProblem(w, r, perr.p)
		return
	}
	key, perr := idempotencyKey(r.Header)
	if perr != nil {
		writeProblem(w, r, perr.p)
		return
	}
	j, randomID, perr := s.decodeJob(body, ri.source, key)
	if perr != nil {
		writeProblem(w, r, perr.p)
		return
	}
	ri.jobID = j.ID
	wait, waitApplied := preferWait(r.Header.Values("Prefer"))

	// A new request from a source over its budget is refused with 429,
	// nothing recorded or published, rather than accepted to be held; one
	// already accepted (its record exists) gets its job whatever the
	// budget says now. The record is read only when the budget has no
	// room, so that a POST under its budget costs one read, not two.
	if perr := s.overBudget(r.Context(), ri.source); perr != nil {
		known := false
		if !randomID {
			var err error
			if _, known, err = s.store.lookup(r.Context(), ri.source, j.ID); err != nil {
				outcome = submitUnavailable
				s.log.Warn().Err(err).Str("request_id", ri.id).Str("job_id", j.ID).Msg("cannot read the request record")
				writeProblem(w, r, unavailableSubmit(err).p)
				return
			}
		}
		if !known {
			outcome = submitOverBudget
			writeProblem(w, r, perr.p)
			return
		}
	}

	// Wait before anything is published, so that a result published at
	// once is not missed.
	resultSubject := s.names.Result(ri.source, j.ID)
	var waiting *waiter
	if wait > 0 && s.store.connected() == nil {
		var err error
		if waiting, err = s.waiters.add(ri.source, j.ID); err != nil {
			waiting = nil // answer 202 without waiting
		} else {
			defer waiting.stop()
		}
	}

	rec, created, err := s.store.record(r.Context(), newRequest(ri.source, &j, time.Now()))
	switch {
	case errors.Is(err, errConflict):
		outcome = submitConflict
		writeProblem(w, r, newProblem(ProblemKeyReused, http.StatusUnprocessableEntity,
			"job %s (Idempotency-Key %q) was submitted at %s with another body: a key names one request; use a new key for a new request",
			j.ID, wire.Truncate(j.IdempotencyKey, 64), rec.SubmittedAt.Format(time.RFC3339)).withJob(j.ID).p)
		return
	case err != nil:
		outcome = submitUnavailable
		s.log.Warn().Err(err).Str("request_id", ri.id).Str("job_id", j.ID).Msg("cannot record the request")
		writeProblem(w, r, unavailableSubmit(err).p)
		return
	}
	if !created {
		outcome = submitRepeated
		// A retry after the job finished gets its result; one before
		// publishes again, which is a no-op within the duplicate window and
		// heals a gateway that stopped between the record and the publish.
		res, found, err := s.store.lastResult(r.Context(), resultSubject)
		if err == nil && found {
			s.answerResult(w, res, "")
			return
		}
	}
	err = s.store.publishJob(r.Context(), ri.source, &j, traceparent(r))
	if err != nil {
		outcome = submitUnavailable
		if created && randomID {
			s.store.forget(r.Context(), rec)
		}
		s.log.Warn().Err(err).Str("request_id", ri.id).Str("job_id", j.ID).Msg("cannot publish the job")
		writeProblem(w, r, unavailableSubmit(err).p)
		return
	}
	if created {
		outcome = submitAccepted
	}
	if waiting != nil {
		if res, ok := s.waitResult(r, waiting, wait); ok {
			s.answerResult(w, res, waitApplied)
			return
		}
	}
	s.answerQueued(w, j.ID, waitApplied)
}

// answerResult answers 200 with a job's result.
func (s *Server) answerResult(w http.ResponseWriter, res wire.Result, applied string) {
	if applied != "" {
		w.Header().Set("Preference-Applied", applied)
	}
	w.Header().Set("Content-Location", jobPath(res.JobID))
	writeJSON(w, http.StatusOK, res)
}

// answerQueued answers 202: the job is queued, follow Location.
func (s *Server) answerQueued(w http.ResponseWriter, id, applied string) {
	h := w.Header()
	if applied != "" {
		h.Set("Preference-Applied", applied)
	}
	h.Set("Location", jobPath(id))
	h.Set("Retry-After", s.retryAfter())
	writeJSON(w, http.StatusAccepted, map[string]string{"jobId": id, "status": statusQueued})
}

func jobPath(id string) string { return "/v1/jobs/" + id }

// retryAfter is Config.RetryAfter in whole seconds, at least 1.
func (s *Server) retryAfter() string {
	return strconv.Itoa(max(1, int(s.cfg.RetryAfter.Round(time.Second)/time.Second)))
}

// readBody reads a job body of at most wire.MaxSize bytes; a larger one is
// 413 without being read to its end.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, *problemError) {
	if r.ContentLength > wire.MaxSize {
		return nil, tooLarge()
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, wire.MaxSize))
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return nil, tooLarge()
	}
	if err != nil {
		return nil, newProblem(ProblemInvalidRequest, http.StatusBadRequest, "the body could not be read: %s", wire.Truncate(err.Error(), 120))
	}
	return body, nil
}

func tooLarge() *problemError {
	return newProblem(ProblemTooLarge, http.StatusRequestEntityTooLarge, "a job is at most %d bytes of JSON; nothing was published", wire.MaxSize)
}

// idempotencyKey reads the Idempotency-Key header: a structured-field
// string ("…", RFC 8941), as the IETF draft defines it, or the bare token
// many clients send. It must be printable ASCII of at most wire.MaxKeySize
// bytes.
func idempotencyKey(h http.Header) (string, *problemError) {
	values := h.Values("Idempotency-Key")
	if len(values) == 0 {
		return "", nil
	}
	if len(values) > 1 {
		return "", newProblem(ProblemInvalidRequest, http.StatusBadRequest, "send one Idempotency-Key header, not %d", len(values))
	}
	v := strings.TrimSpace(values[0])
	if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
		unq, ok := unquoteSFString(v[1 : len(v)-1])
		if !ok {
			return "", newProblem(ProblemInvalidRequest, http.StatusBadRequest, "Idempotency-Key: a quoted key escapes only \\\" and \\\\")
		}
		v = unq
	}
	if v == "" || len(v) > wire.MaxKeySize {
		return "", newProblem(ProblemInvalidRequest, http.StatusBadRequest, "Idempotency-Key: want 1 to %d characters, such as a UUID or INC0012345/<device>", wire.MaxKeySize)
	}
	for i := 0; i < len(v); i++ {
		if v[i] < 0x20 || v[i] > 0x7e {
			return "", newProblem(ProblemInvalidRequest, http.StatusBadRequest, "Idempotency-Key: only printable ASCII characters are allowed")
		}
	}
	return v, nil
}

// unquoteSFString undoes the escapes of a structured-field string.
func unquoteSFString(s string) (string, bool) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\':
			if i+1 == len(s) || (s[i+1] != '"' && s[i+1] != '\\') {
				return "", false
			}
			i++
			b.WriteByte(s[i])
		case c == '"':
			return "", false
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), true
}

// decodeJob decodes and validates a body as the worker will, with the
// caller's source, and settles the job's id and key: with an
// Idempotency-Key (the header, or idempotencyKey in the body; both must
// agree) the id is JobID(source, key); without one, the body's id, else a
// new random one (randomID: nobody can name the job to retry it).
func (s *Server) decodeJob(body []byte, source, headerKey string) (j wire.Job, randomID bool, perr *problemError) {
	placeholder := uuid.NewString()
	j, err := wire.Decode(body, wire.Meta{Source: source, MsgID: placeholder})
	if err != nil {
		return j, false, invalidJob("%s", err)
	}
	bodyID := ""
	if j.ID != placeholder {
		bodyID = j.ID
	}
	bodyKey := ""
	if j.IdempotencyKey != j.ID {
		bodyKey = j.IdempotencyKey
	}
	key := headerKey
	if bodyKey != "" {
		if key != "" && key != bodyKey {
			return j, false, invalidJob("idempotencyKey %q differs from the Idempotency-Key header %q: send the key once", wire.Truncate(bodyKey, 64), wire.Truncate(key, 64))
		}
		key = bodyKey
	}
	switch {
	case key != "":
		id := JobID(source, key)
		if bodyID != "" && bodyID != id {
			return j, false, invalidJob("id: leave it out when an Idempotency-Key is given: the job's id is derived from the source and the key (here %s)", id)
		}
		j.ID, j.IdempotencyKey = id, key
	case bodyID != "":
		j.ID, j.IdempotencyKey = bodyID, bodyID
	default:
		j.IdempotencyKey = j.ID
		randomID = true
	}
	if j.ReplyTo != "" {
		return j, false, invalidJob("replyTo: not accepted over HTTP: the result is stored under %s<jobId> and read with GET /v1/jobs/<jobId> (or waited for with Prefer: wait=N)", s.names.Result(source, ""))
	}
	if err := s.policy.Validate(&j); err != nil {
		return j, false, invalidJob("%s", err)
	}
	return j, randomID, nil
}

func invalidJob(format string, args ...any) *problemError {
	return newProblem(ProblemInvalidJob, http.StatusBadRequest, format+"; nothing was published", args...)
}

// traceparent returns the request's W3C traceparent when it is valid, to
// carry into the job's message.
func traceparent(r *http.Request) string {
	if v := r.Header.Get("traceparent"); wire.ValidTraceparent(v) {
		return v
	}
	return ""
}

// formatWait is the Preference-Applied value of a wait of d.
func formatWait(d time.Duration) string { return fmt.Sprintf("wait=%d", int(d/time.Second)) }
