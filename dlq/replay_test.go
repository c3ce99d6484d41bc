package dlq

import (
	"strings"
	"testing"

	"github.com/recoverpasscode/recoverpasscode/wire"
)

func letter(seq uint64, id, key string, status wire.Status, graph int) Letter {
	names := wire.Names{}
	job := `{"id":"` + id + `","idempotencyKey":"` + key + `","managedDeviceId":"2d6a3d0e-8f5c-4d7a-9b1e-000000000001","replyTo":"` + names.Result("batch", "b1."+id) + `"}`
	res := &wire.Result{JobID: id, IdempotencyKey: key, Source: "batch", Status: status, ManagedDeviceID: "2d6a3d0e-8f5c-4d7a-9b1e-000000000001"}
	if graph != 0 {
		res.Graph = &wire.GraphOutcome{Status: graph}
	}
	return Letter{Seq: seq, DeadLetter: wire.DeadLetter{JobID: id, Source: "batch", Job: job, Result: res}}
}

// TestPlanReplays: the latest letter of a job is replayed under
// <id>-r<seq>, its reply subject moved with it; a stored 404 kept with
// the same key is flagged, a new key is <key>/r<seq>; rejected jobs are
// skipped unless asked for.
func TestPlanReplays(t *testing.T) {
	names := wire.Names{}
	letters := []Letter{
		letter(1, "b1-aaa", "batch/b1/aaa", wire.Failed, 404),
		letter(2, "b1-aaa-r1", "batch/b1/aaa", wire.Failed, 404), // a replay that failed again
		letter(3, "b1-bbb", "batch/b1/bbb", wire.Rejected, 0),
		letter(4, "b1-ccc", "batch/b1/ccc", wire.Failed, 503),
	}
	p := PlanReplays(names, letters, Options{})
	if p.Superseded != 1 || len(p.Replays) != 2 || len(p.Skipped) != 1 || p.Matched() != 4 || p.SameKeyStored() != 1 {
		t.Fatalf("plan: %d replays, %d skipped, %d superseded, %d stored", len(p.Replays), len(p.Skipped), p.Superseded, p.SameKeyStored())
	}
	r := p.Replays[0]
	if r.Job.ID != "b1-aaa-r2" || r.Job.IdempotencyKey != "batch/b1/aaa" || !r.SameKeyStored || r.Subject != names.Jobs("batch") ||
		r.Job.ReplyTo != names.Result("batch", "b1.b1-aaa-r2") {
		t.Fatalf("replay %+v", r)
	}
	if p.Replays[1].SameKeyStored || !strings.HasPrefix(p.Skipped[0].Why, "rejected") {
		t.Fatalf("a 503 is not stored; a rejected job is skipped: %+v %+v", p.Replays[1], p.Skipped[0])
	}
	p = PlanReplays(names, letters, Options{NewKey: true, IncludeRejected: true})
	if len(p.Replays) != 3 || p.Replays[0].Job.IdempotencyKey != "batch/b1/aaa/r2" || p.SameKeyStored() != 0 {
		t.Fatalf("with a new key: %+v", p.Replays)
	}
}

func TestSelector(t *testing.T) {
	l := letter(1, "b1-aaa", "batch/b1/aaa", wire.Failed, 404)
	for _, tc := range []struct {
		sel  Selector
		want bool
	}{
		{Selector{}, true},
		{Selector{Batch: "b1"}, true},
		{Selector{Batch: "b2"}, false},
		{Selector{Device: "2D6A3D0E-8F5C-4D7A-9B1E-000000000001"}, true},
		{Selector{Device: "2d6a3d0e-8f5c-4d7a-9b1e-000000000002"}, false},
		{Selector{Status: wire.Rejected}, false},
		{Selector{ID: "b1-aaa", Status: wire.Failed}, true},
	} {
		if got := tc.sel.Match(l); got != tc.want {
			t.Errorf("%+v matches: %v, want %v", tc.sel, got, tc.want)
		}
	}
	if (Selector{Device: "x"}).Check() == nil || (Selector{Source: "a.b"}).Check() == nil {
		t.Error("bad selectors pass Check")
	}
}
