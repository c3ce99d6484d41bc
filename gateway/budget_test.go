package gateway

import (
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/recoverpasscode/recoverpasscode/internal/testsystem"
	"github.com/recoverpasscode/recoverpasscode/quota"
	"github.com/recoverpasscode/recoverpasscode/ratelimit"
)

// limitsBucket opens the workers' limits bucket of the harness's system,
// once a worker has created it.
func (h *harness) limitsBucket() jetstream.KeyValue {
	h.t.Helper()
	var kv jetstream.KeyValue
	var err error
	if !testsystem.Eventually(15*time.Second, func() bool {
		kv, err = h.sys.JS.KeyValue(h.t.Context(), h.sys.Names.LimitsBucket())
		return err == nil
	}) {
		h.t.Fatal(err)
	}
	return kv
}

// startWorkerWithLimits runs one worker enforcing limits.
func (h *harness) startWorkerWithLimits(name string, limits quota.Limits) {
	h.t.Helper()
	cfg := h.sys.Config(name)
	cfg.SourceLimits = limits
	h.sys.StartWorker(cfg)
}

// overBudget checks r is the 429 of source over the budget rate, with a
// Retry-After of at least 1 and at most max seconds (a window's stamps
// are rounded up by a hundredth of it: 1h holds a unit up to 3636 s).
func overBudget(t *testing.T, r reply, source, rate string, max int) int {
	t.Helper()
	p := r.problem(t, http.StatusTooManyRequests, ProblemOverBudget)
	conforms(t, "Problem", r.body)
	secs, err := strconv.Atoi(r.header.Get("Retry-After"))
	if err != nil || secs < 1 || secs > max {
		t.Fatalf("Retry-After %q, want 1 to %d seconds", r.header.Get("Retry-After"), max)
	}
	want := "source " + source + " is over its budget of " + rate + "; retry after " + strconv.Itoa(secs) + " s"
	if d := p["detail"].(string); !strings.Contains(d, want) {
		t.Fatalf("detail %q, want it to say %q", d, want)
	}
	return secs
}

// TestOverBudgetIs429 has the workers hold source other to one job an
// hour: once its window is spent, a new job is answered 429 with
// Retry-After, nothing recorded or published, while a retry of the job
// already accepted still gets it, and an unlimited source is never
// refused.
func TestOverBudgetIs429(t *testing.T) {
	h := newHarness(t)
	h.startWorkerWithLimits("w1", quota.Limits{"other": {N: 1, Per: time.Hour}, "ticketing": ratelimit.Unlimited})

	first := h.post("other", jobBody(device(60)), "Idempotency-Key", "B-1")
	if first.status != http.StatusAccepted {
		t.Fatalf("the first job: %d %s", first.status, first.body)
	}
	if res := h.waitResult("other", JobID("other", "B-1")); res["status"] != "succeeded" {
		t.Fatalf("the first job: %v", res)
	}

	before := h.jobsStored()
	r := h.post("other", jobBody(device(61)), "Idempotency-Key", "B-2")
	if secs := overBudget(t, r, "other", "1/1h", 3637); secs < 3500 {
		t.Errorf("Retry-After %d s, want about the window's hour", secs)
	}
	if r := h.post("other", jobBody(device(62))); r.status != http.StatusTooManyRequests {
		t.Fatalf("a job without a key over the budget: %d %s", r.status, r.body)
	}
	if got := h.jobsStored(); got != before {
		t.Errorf("%d jobs published over the budget", got-before)
	}
	if r := h.get("other", jobPath(JobID("other", "B-2"))); r.status != http.StatusNotFound {
		t.Errorf("the refused job: GET %d %s, want 404: no record", r.status, r.body)
	}

	// The request accepted before is still answered with its job.
	if r := h.post("other", jobBody(device(60)), "Idempotency-Key", "B-1"); r.status != http.StatusOK || r.json(t)["jobId"] != JobID("other", "B-1") {
		t.Fatalf("a retry of the accepted request over the budget: %d %s", r.status, r.body)
	}

	// A source without a budget is never refused.
	for i := range 3 {
		if r := h.post("ticketing", jobBody(device(70+i))); r.status != http.StatusAccepted {
			t.Fatalf("unlimited source, job %d: %d %s", i, r.status, r.body)
		}
	}
	// Nor one whose window an older worker wrote without its rate.
	legacy, _ := json.Marshal(map[string]any{"grants": [][2]int64{{time.Now().Add(time.Minute).UnixMilli(), 1000}}})
	if _, err := h.limitsBucket().Put(t.Context(), "quota.batch", legacy); err != nil {
		t.Fatal(err)
	}
	if r := h.post("batch", jobBody(device(75))); r.status != http.StatusAccepted {
		t.Fatalf("a window without a rate: %d %s", r.status, r.body)
	}

	const sub = "recoverpasscode_gateway_submissions_total"
	if got := h.counter(sub, map[string]string{"source": "other", "outcome": submitOverBudget}); got != 2 {
		t.Errorf("%v submissions counted over budget, want 2", got)
	}
}

// TestBudgetHasRoomAgain: a job refused over a short budget is accepted
// once the window has room, when Retry-After said.
func TestBudgetHasRoomAgain(t *testing.T) {
	h := newHarness(t)
	const per = 5 * time.Second
	h.startWorkerWithLimits("w1", quota.Limits{"other": {N: 1, Per: per}})
	if r := h.post("other", jobBody(device(80)), "Idempotency-Key", "R-1"); r.status != http.StatusAccepted {
		t.Fatalf("the first job: %d %s", r.status, r.body)
	}
	// The worker takes its unit before calling Graph.
	kv := h.limitsBucket()
	if !testsystem.Eventually(10*time.Second, func() bool {
		_, err := kv.Get(t.Context(), "quota.other")
		return err == nil
	}) {
		t.Fatal("the worker took no unit of the budget")
	}
	refused := time.Now()
	secs := overBudget(t, h.post("other", jobBody(device(81)), "Idempotency-Key", "R-2"), "other", "1/5s", 6)
	var r reply
	if !testsystem.Eventually(3*per, func() bool {
		r = h.post("other", jobBody(device(81)), "Idempotency-Key", "R-2")
		return r.status == http.StatusAccepted
	}) {
		t.Fatalf("the budget has no room %s after the refusal: %d %s", 3*per, r.status, r.body)
	}
	if waited, said := time.Since(refused), time.Duration(secs)*time.Second; waited > said+3*time.Second {
		t.Errorf("accepted %s after a Retry-After of %s", waited.Round(time.Millisecond), said)
	}
	if res := h.waitResult("other", JobID("other", "R-2")); res["status"] != "succeeded" {
		t.Fatalf("the job accepted again: %v", res)
	}
}

// TestRacePastTheDoorIsHeld: jobs accepted before the workers spent the
// window (here: before any worker ran) are held by the workers, not
// failed, and GET says so; a retry of a held job is answered with it,
// over budget as its source is.
func TestRacePastTheDoorIsHeld(t *testing.T) {
	h := newHarness(t)
	for _, key := range []string{"H-1", "H-2"} {
		if r := h.post("other", jobBody(device(90)), "Idempotency-Key", key); r.status != http.StatusAccepted {
			t.Fatalf("job %s: %d %s", key, r.status, r.body)
		}
	}
	h.startWorkerWithLimits("w1", quota.Limits{"other": {N: 1, Per: time.Hour}})

	var heldID string
	var last reply
	if !testsystem.Eventually(20*time.Second, func() bool {
		for _, key := range []string{"H-1", "H-2"} {
			if last = h.get("other", jobPath(JobID("other", key))); last.status == 200 && last.json(t)["status"] == statusHeld {
				heldID = JobID("other", key)
				return true
			}
		}
		return false
	}) {
		t.Fatalf("neither job is shown held: last %d %s", last.status, last.body)
	}
	conforms(t, "JobState", last.body)
	until, err := time.Parse(time.RFC3339, last.json(t)["heldUntil"].(string))
	if err != nil || time.Until(until) < 50*time.Minute {
		t.Errorf("heldUntil %v (%v), want about an hour on", last.json(t)["heldUntil"], err)
	}

	key := "H-1"
	if heldID == JobID("other", "H-2") {
		key = "H-2"
	}
	before := h.jobsStored()
	if r := h.post("other", jobBody(device(90)), "Idempotency-Key", key); r.status != http.StatusAccepted || r.json(t)["jobId"] != heldID {
		t.Fatalf("a retry of the held job: %d %s, want 202 with job %s", r.status, r.body, heldID)
	}
	overBudget(t, h.post("other", jobBody(device(91)), "Idempotency-Key", "H-3"), "other", "1/1h", 3637)
	if got := h.jobsStored() - before; got != 0 {
		t.Errorf("%d jobs stored by a retry (a duplicate within the window) and a refusal, want none", got)
	}
}

// TestBudgetUnreadable runs the gateway as a NATS user that may not read
// the limits bucket (one set up before the gateway looked at budgets): a
// source over its budget is accepted, and held by the workers, rather
// than refused or failed, and after the first read that failed the
// gateway stops looking for a while instead of waiting out a timeout on
// every POST.
func TestBudgetUnreadable(t *testing.T) {
	h := newSystem(t, true)
	perms := NATSPermissions("", "_INBOX.gateway")
	perms.Publish = slices.DeleteFunc(perms.Publish, func(s string) bool { return strings.Contains(s, "_limits") })
	ns := restrictedServer(t, perms)
	cfg := h.sys.Config("w1")
	cfg.NATS.URL, cfg.NATS.User, cfg.NATS.Password = ns.ClientURL(), "worker", "w"
	cfg.SourceLimits = quota.Limits{"other": {N: 1, Per: time.Hour}}
	testsystem.RunWorker(t, cfg, 15*time.Second)
	h.start(ns.ClientURL(), h.sources, nats.UserInfo("gateway", "g"), nats.CustomInboxPrefix("_INBOX.gateway"))
	testsystem.WaitReadyz(t, h.url[len("http://"):], http.StatusOK, 20*time.Second)

	if r := h.post("other", jobBody(device(95)), "Idempotency-Key", "U-1"); r.status != http.StatusAccepted {
		t.Fatalf("the first job: %d %s", r.status, r.body)
	}
	if res := h.waitResult("other", JobID("other", "U-1")); res["status"] != "succeeded" {
		t.Fatalf("the first job: %v", res)
	}
	// Over the budget, unseen: accepted, for the workers to hold.
	if r := h.post("other", jobBody(device(96)), "Idempotency-Key", "U-2"); r.status != http.StatusAccepted {
		t.Fatalf("over the budget, unreadable: %d %s, want 202", r.status, r.body)
	}
	start := time.Now()
	if r := h.post("other", jobBody(device(97)), "Idempotency-Key", "U-3"); r.status != http.StatusAccepted {
		t.Fatalf("over the budget, unreadable, again: %d %s, want 202", r.status, r.body)
	}
	if took := time.Since(start); took > h.gw.cfg.Timeout/2 {
		t.Errorf("the POST after a failed read took %s: the gateway waited on the budget again (timeout %s)", took, h.gw.cfg.Timeout)
	}
	if n := strings.Count(h.logs.String(), "cannot read the source budgets"); n != 1 {
		t.Errorf("%d warnings about the budgets, want 1:\n%s", n, h.logs)
	}
}
