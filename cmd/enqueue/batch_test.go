package main

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/recoverpasscode/recoverpasscode/batch"
	"github.com/recoverpasscode/recoverpasscode/graph/graphsim"
	"github.com/recoverpasscode/recoverpasscode/internal/testsystem"
)

var publishedLine = regexp.MustCompile(`published (\d+) job\(s\) to \S+ in (\S+) \((\d+) jobs/s\)`)

// TestTenThousandRows is the acceptance test: a 10,000-row CSV is
// submitted and followed to its end through real workers; every row has
// one result, the summary counts match, and running the file again makes
// no Graph call.
func TestTenThousandRows(t *testing.T) {
	// Not parallel: it keeps both CPUs busy, and beside the package's
	// other tests it took 70 s against 23 s alone.
	const rows = 10000
	sys := testsystem.Start(t, graphsim.Config{Limit: -1})
	logs := sys.StartWorker(fastWorker(sys, "w1"))
	defer func() {
		if t.Failed() {
			for _, l := range strings.Split(logs.String(), "\n") {
				if strings.Contains(l, "warn") || strings.Contains(l, "error") {
					t.Log(l)
				}
			}
			for i := range rows {
				if n := sys.GS.Performed(testsystem.DeviceN(i)); n != 1 {
					t.Logf("device %d performed %d times", i, n)
				}
			}
		}
	}()
	file := writeFile(t, "devices.csv", devicesCSV(0, rows))
	out := filepath.Join(t.TempDir(), "results.jsonl")

	start := time.Now()
	first := enqueue(t.Context(), t, sys, "--file", file, "--wait", "--output", out, "--progress", "lines")
	took := time.Since(start)
	if first.code != exitOK {
		t.Fatalf("first run: %s", first)
	}
	m := publishedLine.FindStringSubmatch(first.stdout)
	if m == nil || m[1] != "10000" {
		t.Fatalf("first run did not report publishing 10000 jobs:\n%s", first)
	}
	t.Logf("published %s jobs in %s: %s jobs/s; the batch took %s end to end", m[1], m[2], m[3], took.Round(time.Millisecond))

	name := batchName(t, first.stdout)
	perJob := resultsPerSubject(t, sys, batch.ResultsFilter(sys.Names, "batch", name))
	if len(perJob) != rows {
		t.Errorf("%d jobs have a stored result, want %d", len(perJob), rows)
	}
	for subject, n := range perJob {
		if n != 1 {
			t.Errorf("%s: %d results stored", subject, n)
		}
	}
	sys.AssertJobsStreamEmpty() // every job acknowledged: no Graph call can follow
	callsAfterFirst := len(sys.GS.Calls())
	if callsAfterFirst != rows {
		t.Errorf("%d Graph calls for %d rows", callsAfterFirst, rows)
	}
	for _, want := range []string{"batch " + name + ": 10000 rows, 10000 with a result", "  succeeded  10000\n", "  failed         0\n", "  pending        0  (no result yet)\n"} {
		if !strings.Contains(first.stdout, want) {
			t.Errorf("summary lacks %q:\n%s", want, first.stdout)
		}
	}
	if n := countLines(t, out); n != rows {
		t.Errorf("--output holds %d results, want %d", n, rows)
	}

	again := enqueue(t.Context(), t, sys, "--file", file, "--wait", "--progress", "lines")
	if again.code != exitOK {
		t.Fatalf("second run: %s", again)
	}
	if !strings.Contains(again.stdout, "10000 row(s) already have a result from an earlier run") || strings.Contains(again.stdout, "published") {
		t.Errorf("second run submitted again:\n%s", again.stdout)
	}
	if calls := len(sys.GS.Calls()); calls != callsAfterFirst {
		t.Errorf("the second run made %d Graph calls", calls-callsAfterFirst)
	}
	if !strings.Contains(again.stdout, "  succeeded  10000\n") {
		t.Errorf("second run's summary:\n%s", again.stdout)
	}
}

// resultsPerSubject counts the stored results under a filter by subject
// (one subject per job), from the stream's state.
func resultsPerSubject(t *testing.T, sys *testsystem.System, filter string) map[string]uint64 {
	t.Helper()
	s, err := sys.JS.Stream(t.Context(), sys.Names.ResultsStream())
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(t.Context(), jetstream.WithSubjectFilter(filter))
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Subjects
}

func countLines(t *testing.T, path string) int {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var r struct {
			Line   int    `json:"line"`
			Status string `json:"status"`
		}
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil || r.Line == 0 || r.Status == "" {
			t.Fatalf("output line %d is not a result with its line: %s", n+1, sc.Text())
		}
		n++
	}
	return n
}
