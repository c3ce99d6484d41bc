package main

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/recoverpasscode/recoverpasscode/batch"
	"github.com/recoverpasscode/recoverpasscode/graph/graphsim"
	"github.com/recoverpasscode/recoverpasscode/internal/testsystem"
)

var replayedLine = regexp.MustCompile(`(?m)^replayed #\d+ job \S+ as (\S+) on `)

// TestFailuresResultsAndReplay follows a batch whose devices Graph cannot
// find at first: the summary names them with Graph's code, `results`
// shows the same later, `dlq list` lists them, `dlq replay` with the same
// key is answered from the record, and `dlq replay --new-key` once the
// devices exist recovers each exactly once. A rejected row is never
// replayed without --include-rejected.
func TestFailuresResultsAndReplay(t *testing.T) {
	t.Parallel()
	sys := testsystem.Start(t, graphsim.Config{Limit: -1})
	sys.StartWorker(fastWorker(sys, "w1"))
	missing := map[string]bool{testsystem.DeviceN(2): true, testsystem.DeviceN(3): true}
	for d := range missing {
		sys.GS.SetDeviceMissing(d)
	}
	const foreign = "66666666-6666-4666-8666-666666666666"
	content := "managedDeviceId,ticket,tenantId\n"
	for i := range 5 {
		content += fmt.Sprintf("%s,CHG%d,\n", testsystem.DeviceN(i), i)
	}
	content += testsystem.DeviceN(5) + ",CHG5," + foreign + "\n" // a tenant the workers may not act on
	file := writeFile(t, "devices.csv", content)

	first := enqueue(t.Context(), t, sys, "--file", file, "--batch", "may", "--wait")
	if first.code != exitNotSucceeded {
		t.Fatalf("first run: %s", first)
	}
	for _, want := range []string{
		"  succeeded  3\n", "  failed     2\n", "  rejected   1\n",
		"did not succeed (3):",
		fmt.Sprintf("  4     %s  failed    404    ResourceNotFound", testsystem.DeviceN(2)),
		fmt.Sprintf("  5     %s  failed    404    ResourceNotFound", testsystem.DeviceN(3)),
		fmt.Sprintf("  7     %s  rejected  -      -                 tenantId: tenant %s is not one this worker may act on", testsystem.DeviceN(5), foreign),
	} {
		if !strings.Contains(first.stdout, want) {
			t.Errorf("summary lacks %q:\n%s", want, first.stdout)
		}
	}

	withFile := enqueue(t.Context(), t, sys, "results", "--file", file, "--batch", "may", "--output", t.TempDir()+"/r.jsonl")
	if withFile.code != exitNotSucceeded || !strings.Contains(withFile.stdout, "batch may: 6 rows, 6 with a result") ||
		!strings.Contains(withFile.stdout, "  4     "+testsystem.DeviceN(2)) || !strings.Contains(withFile.stdout, "wrote 6 result(s)") {
		t.Errorf("results --file: %s", withFile)
	}
	later := enqueue(t.Context(), t, sys, "results", "--batch", "may")
	if later.code != exitNotSucceeded || !strings.Contains(later.stdout, "batch may: 6 results\n  succeeded  3\n  failed     2\n  rejected   1\n") {
		t.Errorf("results: %s", later)
	}

	list := enqueue(t.Context(), t, sys, "dlq", "list", "--batch", "may")
	if list.code != exitOK || !strings.Contains(list.stdout, "3 dead letter(s)") || !strings.Contains(list.stdout, "ResourceNotFound") {
		t.Errorf("dlq list: %s", list)
	}

	sameKey := enqueue(t.Context(), t, sys, "dlq", "replay", "--batch", "may")
	if sameKey.code != exitNotSucceeded || !strings.Contains(sameKey.stdout, "pass --include-rejected") ||
		!strings.Contains(sameKey.stdout, "note: 2 of these will be answered from their key's record with the same failure") {
		t.Errorf("dlq replay: %s", sameKey)
	}
	waitReplays(t, sys, sameKey.stdout, 2)
	if calls := len(sys.GS.Calls()); calls != 5 {
		t.Errorf("%d Graph calls after replaying with the same keys, want the first 5", calls)
	}

	for d := range missing {
		sys.GS.SetDevicePresent(d)
	}
	newKey := enqueue(t.Context(), t, sys, "dlq", "replay", "--batch", "may", "--new-key")
	if newKey.code != exitNotSucceeded || !strings.Contains(newKey.stdout, "2 dead letter(s) left out: a later dead letter of the same job") {
		t.Errorf("dlq replay --new-key: %s", newKey)
	}
	waitReplays(t, sys, newKey.stdout, 2)
	for d := range missing {
		if n := sys.GS.Performed(d); n != 1 {
			t.Errorf("device %s recovered %d times", d, n)
		}
	}

	final := enqueue(t.Context(), t, sys, "--file", file, "--batch", "may", "--wait", "--output", t.TempDir()+"/r.csv")
	if final.code != exitNotSucceeded || !strings.Contains(final.stdout, "  succeeded  5\n  failed     0\n  rejected   1\n") {
		t.Errorf("re-run after the replays: %s", final)
	}
}

// waitReplays waits for the results of the replays a replay command
// printed.
func waitReplays(t *testing.T, sys *testsystem.System, stdout string, n int) {
	t.Helper()
	ms := replayedLine.FindAllStringSubmatch(stdout, -1)
	if len(ms) != n {
		t.Fatalf("%d replays printed, want %d:\n%s", len(ms), n, stdout)
	}
	for _, m := range ms {
		sys.Results(batch.ResultSubject(sys.Names, "batch", "may", m[1]), 1, 10*time.Second)
	}
}
