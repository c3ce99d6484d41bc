package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/recoverpasscode/recoverpasscode/internal/testsystem"
	"github.com/recoverpasscode/recoverpasscode/wire"
)

// page lists jobs as source with the query q and returns the jobs' ids,
// their statuses and the next cursor.
func (h *harness) page(source string, q url.Values) (ids, statuses []string, next string) {
	h.t.Helper()
	r := h.get(source, "/v1/jobs?"+q.Encode())
	if r.status != http.StatusOK {
		h.t.Fatalf("list %s: %d %s", q.Encode(), r.status, r.body)
	}
	conforms(h.t, "JobList", r.body)
	var body struct {
		Jobs []struct {
			JobID  string `json:"jobId"`
			Status string `json:"status"`
		} `json:"jobs"`
		Next string `json:"next"`
	}
	if err := json.Unmarshal(r.body, &body); err != nil {
		h.t.Fatal(err)
	}
	for _, j := range body.Jobs {
		ids = append(ids, j.JobID)
		statuses = append(statuses, j.Status)
	}
	return ids, statuses, body.Next
}

// all follows the cursor from the first page to the last.
func (h *harness) all(source string, q url.Values) []string {
	h.t.Helper()
	var out []string
	for range 100 {
		ids, _, next := h.page(source, q)
		out = append(out, ids...)
		if next == "" {
			return out
		}
		q.Set("cursor", next)
	}
	h.t.Fatal("the cursor never ended")
	return nil
}

func query(kv ...string) url.Values {
	q := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		q.Set(kv[i], kv[i+1])
	}
	return q
}

func equal(a, b []string) bool { return fmt.Sprint(a) == fmt.Sprint(b) }

// TestListJobs lists a source's jobs while they are queued and once they
// have finished, with filters and pages, across more results of another
// source than one scan window holds.
func TestListJobs(t *testing.T) {
	h := newHarness(t)
	var ids []string // in submission order
	for i, ticket := range []string{"T1", "T2", "T1"} {
		r := h.post("ticketing", jobBody(device(50+i), "ticket", ticket))
		if r.status != http.StatusAccepted {
			t.Fatalf("submit: %d %s", r.status, r.body)
		}
		ids = append(ids, r.json(t)["jobId"].(string))
	}
	newest := []string{ids[2], ids[1], ids[0]}

	got, statuses, _ := h.page("ticketing", nil)
	if !equal(got, newest) || !equal(statuses, []string{"queued", "queued", "queued"}) {
		t.Fatalf("queued jobs %v %v, want %v queued", got, statuses, newest)
	}
	if got := h.all("ticketing", query("limit", "2")); !equal(got, newest) {
		t.Fatalf("pages of 2: %v, want %v", got, newest)
	}
	if got, _, _ := h.page("ticketing", query("ticket", "T1")); !equal(got, []string{ids[2], ids[0]}) {
		t.Fatalf("ticket T1: %v", got)
	}
	if got, _, _ := h.page("ticketing", query("status", "succeeded")); len(got) != 0 {
		t.Fatalf("succeeded before a worker ran: %v", got)
	}
	if got, _, _ := h.page("other", nil); len(got) != 0 {
		t.Fatalf("another source sees %v", got)
	}
	// Finished jobs follow the queued ones, also when the queued fill a
	// page exactly.
	h.fillResults("ticketing", 2)
	if got := h.all("ticketing", query("limit", "3")); !equal(got, append(newest, "filler-00001", "filler-00000")) {
		t.Fatalf("queued, then finished: %v", got)
	}
	if got := h.all("ticketing", query("status", "queued", "limit", "3")); !equal(got, newest) {
		t.Fatalf("queued only: %v", got)
	}

	h.startWorker("w1")
	for _, id := range ids {
		h.waitResult("ticketing", id)
	}
	h.fillResults("other", 1500) // after this source's: a page must look past them
	got = h.all("ticketing", query("limit", "1"))
	if len(got) != 5 {
		t.Fatalf("finished jobs, one a page: %v", got)
	}
	for _, id := range ids {
		if !contains(got, id) {
			t.Fatalf("finished jobs %v lack %s", got, id)
		}
	}
	if got, statuses, _ := h.page("ticketing", query("status", "succeeded", "device", device(51))); !equal(got, []string{ids[1]}) || statuses[0] != "succeeded" {
		t.Fatalf("device %s: %v %v", device(51), got, statuses)
	}
	if got, _, _ := h.page("ticketing", query("status", "queued")); len(got) != 0 {
		t.Fatalf("queued after the worker ran: %v", got)
	}

	for q, detail := range map[string]string{
		"status=lost":    "status",
		"limit=0":        "limit",
		"limit=201":      "limit",
		"device=nope":    "device",
		"batch=a.b":      "batch",
		"cursor=garbage": "cursor",
		"ticket=T1&cursor=" + h.cursorOf(query("limit", "1")): "other filters",
	} {
		p := h.get("ticketing", "/v1/jobs?"+q).problem(t, http.StatusBadRequest, ProblemInvalidRequest)
		if !strings.Contains(p["detail"].(string), detail) {
			t.Errorf("%s: detail %q does not mention %q", q, p["detail"], detail)
		}
	}
}

func (h *harness) cursorOf(q url.Values) string {
	_, _, next := h.page("ticketing", q)
	if next == "" {
		h.t.Fatal("no cursor")
	}
	return url.QueryEscape(next)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// fillResults stores n results of source directly in the results stream.
func (h *harness) fillResults(source string, n int) {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var acks []jetstream.PubAckFuture
	for i := range n {
		id := fmt.Sprintf("filler-%05d", i)
		data, _ := json.Marshal(wire.Result{JobID: id, IdempotencyKey: id, Source: source, Status: wire.Succeeded})
		f, err := h.sys.JS.PublishAsync(h.sys.Names.Result(source, id), data)
		if err != nil {
			h.t.Fatal(err)
		}
		acks = append(acks, f)
	}
	for _, f := range acks {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			h.t.Fatal(err)
		case <-ctx.Done():
			h.t.Fatal("results not stored")
		}
	}
}

// TestBatchCounts counts a batch's rows, the later result of a row (a
// dead letter's replay) replacing the earlier, for the batch's source only.
func TestBatchCounts(t *testing.T) {
	h := newHarness(t)
	h.sys.GS.SetDeviceMissing(device(62))
	h.startWorker("w1")
	for i := range 3 {
		id := fmt.Sprintf("b7-%04d", i)
		h.sys.Submit("batch", wire.Job{ID: id, ManagedDeviceID: device(60 + i), ReplyTo: h.sys.Names.Result("batch", "b7."+id)})
	}
	var counts map[string]any
	ok := testsystem.Eventually(30*time.Second, func() bool {
		r := h.get("batch", "/v1/batches/b7")
		if r.status != 200 {
			return false
		}
		conforms(t, "BatchCounts", r.body)
		counts = r.json(t)
		return counts["results"] == float64(3)
	})
	if !ok || counts["succeeded"] != float64(2) || counts["failed"] != float64(1) || counts["source"] != "batch" {
		t.Fatalf("counts %v", counts)
	}
	if r := h.get("batch", "/v1/jobs/b7-0002"); r.status != 200 || r.json(t)["status"] != "failed" {
		t.Fatalf("a batch job by its id: %d %s", r.status, r.body)
	}
	replay, _ := json.Marshal(wire.Result{JobID: "b7-0002-r9", IdempotencyKey: "k", Source: "batch", Status: wire.Succeeded})
	if _, err := h.sys.JS.Publish(t.Context(), h.sys.Names.Result("batch", "b7.b7-0002-r9"), replay); err != nil {
		t.Fatal(err)
	}
	counts = h.get("batch", "/v1/batches/b7").json(t)
	if counts["results"] != float64(3) || counts["succeeded"] != float64(3) || counts["failed"] != float64(0) {
		t.Fatalf("counts after a replay %v", counts)
	}
	if ids, _, _ := h.page("batch", query("batch", "b7", "status", "succeeded")); len(ids) != 3 {
		t.Fatalf("the batch's succeeded jobs: %v", ids)
	}
	h.get("ticketing", "/v1/batches/b7").problem(t, http.StatusNotFound, ProblemNotFound)
	h.get("batch", "/v1/batches/b8").problem(t, http.StatusNotFound, ProblemNotFound)
	h.get("batch", "/v1/batches/b.8").problem(t, http.StatusNotFound, ProblemNotFound)
}
