package batch_test

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"strings"
	"testing"

	"github.com/recoverpasscode/recoverpasscode/batch"
	"github.com/recoverpasscode/recoverpasscode/wire"
)

func outcomes(results ...wire.Result) *batch.Outcomes {
	o := batch.NewOutcomes()
	for _, r := range results {
		o.Add(r)
	}
	return o
}

var (
	okResult   = wire.Result{JobID: "may-aaaaaaaaaaaaaaaaaaaa", ManagedDeviceID: dev1, Status: wire.Succeeded, Attempts: 1, Graph: &wire.GraphOutcome{Status: 204}}
	missing    = wire.Result{JobID: "may-bbbbbbbbbbbbbbbbbbbb", ManagedDeviceID: dev2, Status: wire.Failed, Attempts: 1, Error: "graph answered 404 ResourceNotFound: gone", Graph: &wire.GraphOutcome{Status: 404, ErrorCode: "ResourceNotFound", ErrorMessage: "The managed device\nwas not found."}}
	rejected   = wire.Result{JobID: "may-cccccccccccccccccccc", ManagedDeviceID: dev1, Status: wire.Rejected, Error: "tenantId: not allowed"}
	replayedOK = wire.Result{JobID: "may-bbbbbbbbbbbbbbbbbbbb-r4", ManagedDeviceID: dev2, Status: wire.Succeeded, Replayed: true}
)

// TestOutcomesKeepTheLatest: a replay's result replaces its row's earlier
// one.
func TestOutcomesKeepTheLatest(t *testing.T) {
	o := outcomes(okResult, missing, rejected)
	if c := o.Counts(); c.Succeeded != 1 || c.Failed != 1 || c.Rejected != 1 || c.NotSucceeded() != 2 {
		t.Errorf("counts %+v", c)
	}
	if first := o.Add(replayedOK); first {
		t.Error("a replay counted as a new row")
	}
	if c := o.Counts(); o.Len() != 3 || c.Succeeded != 2 || c.Failed != 0 || c.Replayed != 1 {
		t.Errorf("after the replay: %d rows, counts %+v", o.Len(), c)
	}
}

// TestSummary: counts by status, pending rows, and the rows that did not
// succeed in file order, with device, Graph status and code, and a
// one-line message.
func TestSummary(t *testing.T) {
	lines := map[string]int{"may-aaaaaaaaaaaaaaaaaaaa": 2, "may-bbbbbbbbbbbbbbbbbbbb": 9, "may-cccccccccccccccccccc": 5}
	var buf bytes.Buffer
	err := batch.Summary{Batch: "may", Rows: 4, Outcomes: outcomes(okResult, missing, rejected), Line: func(id string) int { return lines[id] }, MaxListed: 1, More: "see the file"}.Write(&buf)
	if err != nil {
		t.Fatal(err)
	}
	want := `batch may: 4 rows, 3 with a result
  succeeded  1
  failed     1
  rejected   1
  expired    0
  pending    1  (no result yet)

did not succeed (2):
  LINE  DEVICE                                STATUS    GRAPH  CODE  MESSAGE
  5     2d6a3d0e-8f5c-4d7a-9b1e-000000000001  rejected  -      -     tenantId: not allowed
  … and 1 more (see the file)
`
	if buf.String() != want {
		t.Errorf("summary\n%s\nwant\n%s", buf.String(), want)
	}
	if got := batch.Message(missing); got != "The managed device was not found." {
		t.Errorf("Message = %q", got)
	}
}

// TestWriteResults: JSONL keeps every result field and adds the line; CSV
// has a header and one row per result.
func TestWriteResults(t *testing.T) {
	entries := []batch.Entry{{Line: 2, Result: okResult}, {Line: 9, Result: missing}}
	var jl bytes.Buffer
	if err := batch.WriteResults(&jl, batch.OutputJSONL, entries); err != nil {
		t.Fatal(err)
	}
	var got []struct {
		Line int `json:"line"`
		wire.Result
	}
	for _, l := range strings.Split(strings.TrimSpace(jl.String()), "\n") {
		var r struct {
			Line int `json:"line"`
			wire.Result
		}
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatal(err)
		}
		got = append(got, r)
	}
	if len(got) != 2 || got[1].Line != 9 || got[1].Graph.ErrorCode != "ResourceNotFound" || got[0].JobID != okResult.JobID {
		t.Errorf("JSONL read back as %+v", got)
	}

	var c bytes.Buffer
	if err := batch.WriteResults(&c, batch.OutputCSV, entries); err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(&c).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 3 || recs[0][0] != "line" || recs[2][0] != "9" || recs[2][2] != "failed" || recs[2][13] != "ResourceNotFound" || recs[2][14] != "The managed device\nwas not found." {
		t.Errorf("CSV %q", recs)
	}
	for _, tc := range []struct {
		path string
		ok   bool
	}{{"r.csv", true}, {"R.JSONL", true}, {"r.ndjson", true}, {"r.txt", false}, {"r", false}} {
		if _, err := batch.OutputFormatOf(tc.path); (err == nil) != tc.ok {
			t.Errorf("OutputFormatOf(%q) error %v", tc.path, err)
		}
	}
}
