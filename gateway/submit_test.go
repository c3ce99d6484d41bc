package gateway

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/recoverpasscode/recoverpasscode/wire"
)

// TestSubmitAndWait submits with Prefer: wait and gets the result in the
// same answer, from a real worker calling the Graph double.
func TestSubmitAndWait(t *testing.T) {
	h := newHarness(t)
	h.startWorker("w1")
	r := h.post("ticketing", jobBody(device(1), "ticket", "INC0012345", "requestedBy", "agent@contoso.com"), "Prefer", "wait=20")
	if r.status != http.StatusOK {
		t.Fatalf("answer %d %s, want 200 with the result", r.status, r.body)
	}
	conforms(t, "Result", r.body)
	res := r.json(t)
	if res["status"] != "succeeded" || res["source"] != "ticketing" || res["ticket"] != "INC0012345" || res["managedDeviceId"] != device(1) {
		t.Fatalf("result %v", res)
	}
	if got := r.header.Get("Preference-Applied"); got != "wait=20" {
		t.Errorf("Preference-Applied %q, want wait=20", got)
	}
	if got := r.header.Get("Content-Location"); got != "/v1/jobs/"+res["jobId"].(string) {
		t.Errorf("Content-Location %q", got)
	}
	if n := h.performed(device(1)); n != 1 {
		t.Errorf("Graph performed the action %d times, want 1", n)
	}
}

// TestSubmitThenPoll submits without waiting, sees the job queued while
// no worker runs, and polls Location until the worker has answered.
func TestSubmitThenPoll(t *testing.T) {
	h := newHarness(t)
	r := h.post("ticketing", jobBody(device(2)))
	if r.status != http.StatusAccepted {
		t.Fatalf("answer %d %s, want 202", r.status, r.body)
	}
	conforms(t, "Accepted", r.body)
	body := r.json(t)
	id, _ := body["jobId"].(string)
	loc := r.header.Get("Location")
	if body["status"] != statusQueued || loc != "/v1/jobs/"+id || r.header.Get("Retry-After") != "1" {
		t.Fatalf("answer %v, Location %q, Retry-After %q", body, loc, r.header.Get("Retry-After"))
	}
	q := h.get("ticketing", loc)
	if q.status != http.StatusOK || q.json(t)["status"] != statusQueued || q.header.Get("Retry-After") == "" {
		t.Fatalf("GET before a worker ran: %d %s", q.status, q.body)
	}
	conforms(t, "JobState", q.body)
	h.startWorker("w1")
	res := h.waitResult("ticketing", id)
	if res["status"] != "succeeded" || res["jobId"] != id {
		t.Fatalf("result %v", res)
	}
	conforms(t, "JobState", h.get("ticketing", loc).body)
}

// TestConcurrentIdenticalPosts sends the same POST with one
// Idempotency-Key 100 times at once: every answer names the same job, the
// jobs stream stores it once, and Graph is called once.
func TestConcurrentIdenticalPosts(t *testing.T) {
	h := newHarness(t)
	h.startWorker("w1")
	before := h.jobsStored()
	const n = 100
	replies := h.parallelPosts(n, "ticketing", jobBody(device(3), "ticket", "INC7"), "Idempotency-Key", `"INC7/`+device(3)+`"`, "Prefer", "wait=30")
	want := JobID("ticketing", "INC7/"+device(3))
	for i, r := range replies {
		if r.status != http.StatusOK && r.status != http.StatusAccepted {
			t.Fatalf("answer %d: %d %s", i, r.status, r.body)
		}
		if got := r.json(t)["jobId"]; got != want {
			t.Fatalf("answer %d names job %v, want %s", i, got, want)
		}
	}
	h.waitResult("ticketing", want)
	if got := h.jobsStored() - before; got != 1 {
		t.Errorf("the jobs stream stored %d jobs, want 1", got)
	}
	if got := h.performed(device(3)); got != 1 {
		t.Errorf("Graph performed the action %d times, want 1", got)
	}
	if got := h.resultsOf("ticketing", want); got != 1 {
		t.Errorf("%d results stored, want 1", got)
	}
	// A retry after the job finished is answered with its result.
	again := h.post("ticketing", jobBody(device(3), "ticket", "INC7"), "Idempotency-Key", "INC7/"+device(3))
	if again.status != http.StatusOK || again.json(t)["status"] != "succeeded" {
		t.Fatalf("retry after the result: %d %s", again.status, again.body)
	}
	if got := h.jobsStored() - before; got != 1 {
		t.Errorf("a retry after the result stored a job again (%d)", got)
	}
	const sub = "recoverpasscode_gateway_submissions_total"
	accepted := h.counter(sub, map[string]string{"source": "ticketing", "outcome": submitAccepted})
	repeated := h.counter(sub, map[string]string{"source": "ticketing", "outcome": submitRepeated})
	if accepted != 1 || repeated != n {
		t.Errorf("submissions: %v accepted, %v repeated; want 1 and %d", accepted, repeated, n)
	}
}

// TestKeyReusedWithAnotherBody is 422, and publishes nothing.
func TestKeyReusedWithAnotherBody(t *testing.T) {
	h := newHarness(t)
	if r := h.post("ticketing", jobBody(device(4)), "Idempotency-Key", "K-1"); r.status != http.StatusAccepted {
		t.Fatalf("first: %d %s", r.status, r.body)
	}
	before := h.jobsStored()
	r := h.post("ticketing", jobBody(device(5)), "Idempotency-Key", "K-1")
	p := r.problem(t, http.StatusUnprocessableEntity, ProblemKeyReused)
	conforms(t, "Problem", r.body)
	if p["jobId"] != JobID("ticketing", "K-1") || !strings.Contains(p["detail"].(string), "another body") {
		t.Fatalf("problem %v", p)
	}
	// The same key from another source is another job.
	if r := h.post("other", jobBody(device(5)), "Idempotency-Key", "K-1"); r.status != http.StatusAccepted || r.json(t)["jobId"] == JobID("ticketing", "K-1") {
		t.Fatalf("the key of another source: %d %s", r.status, r.body)
	}
	// The same body in another layout is the same request.
	if r := h.post("ticketing", "{ \"managedDeviceId\" : \""+strings.ToLower(device(4))+"\" }", "Idempotency-Key", "K-1"); r.status != http.StatusAccepted {
		t.Fatalf("the same body reformatted: %d %s", r.status, r.body)
	}
	if got := h.jobsStored() - before; got != 1 {
		t.Errorf("%d jobs stored, want 1 (the other source's)", got)
	}
}

// TestInvalidRequestsPublishNothing: each answer is a problem of the right
// kind and nothing reaches the jobs stream or the requests bucket.
func TestInvalidRequestsPublishNothing(t *testing.T) {
	h := newHarness(t)
	before := h.jobsStored()
	big := `{"managedDeviceId":"` + device(6) + `","ticket":"` + strings.Repeat("x", wire.MaxSize) + `"}`
	for _, tc := range []struct {
		name, body string
		headers    []string
		status     int
		typ        ProblemType
		detail     string
	}{
		{"invalid device", `{"managedDeviceId":"not-a-guid"}`, nil, 400, ProblemInvalidJob, "managedDeviceId"},
		{"unknown field", `{"managedDeviceId":"` + device(6) + `","colour":"red"}`, nil, 400, ProblemInvalidJob, `unknown field "colour"`},
		{"not JSON", `managedDeviceId=` + device(6), nil, 400, ProblemInvalidJob, "not valid JSON"},
		{"empty", ``, nil, 400, ProblemInvalidJob, "empty"},
		{"replyTo", `{"managedDeviceId":"` + device(6) + `","replyTo":"_INBOX.x"}`, nil, 400, ProblemInvalidJob, "replyTo"},
		{"tenant not allowed", `{"managedDeviceId":"` + device(6) + `","tenantId":"99999999-9999-4999-8999-999999999999"}`, nil, 400, ProblemInvalidJob, "RECOVER_TENANTS"},
		{"id with a key", `{"id":"mine","managedDeviceId":"` + device(6) + `"}`, []string{"Idempotency-Key", "k"}, 400, ProblemInvalidJob, "leave it out"},
		{"two keys", `{"idempotencyKey":"a","managedDeviceId":"` + device(6) + `"}`, []string{"Idempotency-Key", "b"}, 400, ProblemInvalidJob, "differs"},
		{"a badly quoted key", jobBody(device(6)), []string{"Idempotency-Key", "\"a\\b\""}, 400, ProblemInvalidRequest, "Idempotency-Key"},
		{"oversized", big, nil, 413, ProblemTooLarge, "16384"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := h.post("ticketing", tc.body, tc.headers...)
			p := r.problem(t, tc.status, tc.typ)
			conforms(t, "Problem", r.body)
			if !strings.Contains(p["detail"].(string), tc.detail) {
				t.Errorf("detail %q does not mention %q", p["detail"], tc.detail)
			}
		})
	}
	if got := h.jobsStored(); got != before {
		t.Errorf("%d jobs were published", got-before)
	}
	kv, err := h.sys.JS.KeyValue(t.Context(), h.sys.Names.RequestsBucket())
	if err != nil {
		t.Fatal(err)
	}
	if st, err := kv.Status(t.Context()); err != nil || st.Values() != 0 {
		t.Errorf("the requests bucket holds %d records (%v)", st.Values(), err)
	}
}

// TestOtherSourcesJobIsNotFound: a job is read by its own source only.
func TestOtherSourcesJobIsNotFound(t *testing.T) {
	h := newHarness(t)
	h.startWorker("w1")
	r := h.post("ticketing", jobBody(device(7)), "Prefer", "wait=20")
	id := r.json(t)["jobId"].(string)
	h.waitResult("ticketing", id)
	h.get("other", jobPath(id)).problem(t, http.StatusNotFound, ProblemNotFound)
	h.get("other", "/v1/jobs/no-such-job").problem(t, http.StatusNotFound, ProblemNotFound)
	h.get("ticketing", "/v1/jobs/bad.id").problem(t, http.StatusNotFound, ProblemNotFound)
	list := h.get("other", "/v1/jobs")
	if list.status != 200 || len(list.json(t)["jobs"].([]any)) != 0 {
		t.Fatalf("another source's list: %d %s", list.status, list.body)
	}
}

func TestPreferWait(t *testing.T) {
	for _, tc := range []struct {
		in      []string
		wait    time.Duration
		applied string
	}{
		{nil, 0, ""},
		{[]string{"wait=10"}, 10 * time.Second, "wait=10"},
		{[]string{"respond-async, wait=5"}, 5 * time.Second, "wait=5"},
		{[]string{"Wait = 7"}, 7 * time.Second, "wait=7"},
		{[]string{"wait=600"}, MaxWait, "wait=60"},
		{[]string{"wait=-1"}, 0, ""},
		{[]string{"wait=soon"}, 0, ""},
		{[]string{"return=minimal", "wait=3"}, 3 * time.Second, "wait=3"},
		{[]string{"wait=0"}, 0, ""},
	} {
		wait, applied := preferWait(tc.in)
		if wait != tc.wait || applied != tc.applied {
			t.Errorf("preferWait(%q) = %s %q, want %s %q", tc.in, wait, applied, tc.wait, tc.applied)
		}
	}
}

func TestIdempotencyKeyHeader(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{`"8e03978e-40d5-43e8-bc93-6894a57f9324"`, "8e03978e-40d5-43e8-bc93-6894a57f9324", true},
		{`INC1/abc`, "INC1/abc", true},
		{`"a\"b\\c"`, `a"b\c`, true},
		{`"a\x"`, "", false},
		{`""`, "", false},
		{strings.Repeat("k", wire.MaxKeySize+1), "", false},
		{"caf\u00e9", "", false},
	} {
		got, perr := idempotencyKey(http.Header{"Idempotency-Key": {tc.in}})
		if (perr == nil) != tc.ok || got != tc.want {
			t.Errorf("idempotencyKey(%q) = %q, %v", tc.in, got, perr)
		}
	}
	if _, perr := idempotencyKey(http.Header{"Idempotency-Key": {"a", "b"}}); perr == nil {
		t.Error("two Idempotency-Key headers accepted")
	}
}

// TestRetryHealsARecordWithoutItsJob: a gateway that stopped between
// writing the record and publishing the job leaves a record alone; the
// caller's retry publishes the job.
func TestRetryHealsARecordWithoutItsJob(t *testing.T) {
	h := newHarness(t)
	body := jobBody(device(8))
	j, _, perr := h.gw.decodeJob([]byte(body), "ticketing", "INC8")
	if perr != nil {
		t.Fatal(perr)
	}
	if _, created, err := h.gw.store.record(t.Context(), newRequest("ticketing", &j, time.Now())); err != nil || !created {
		t.Fatalf("record: %v %v", created, err)
	}
	before := h.jobsStored()
	if q := h.get("ticketing", jobPath(j.ID)); q.json(t)["status"] != statusQueued {
		t.Fatalf("the record alone: %s", q.body)
	}
	h.startWorker("w1")
	r := h.post("ticketing", body, "Idempotency-Key", "INC8", "Prefer", "wait=20")
	if r.status != http.StatusOK || r.json(t)["jobId"] != j.ID {
		t.Fatalf("the retry: %d %s", r.status, r.body)
	}
	if got := h.jobsStored() - before; got != 1 {
		t.Errorf("%d jobs stored, want 1", got)
	}
}
