package main

import (
	"io"
	"strings"
	"testing"

	"github.com/recoverpasscode/recoverpasscode/graph/graphsim"
	"github.com/recoverpasscode/recoverpasscode/internal/testsystem"
)

// badFile has three bad rows among good ones: a bad GUID, a value in no
// column, and both userId and detectedAppId.
var badFile = "ManagedDeviceId,userId,detectedAppId,TICKET\n" +
	testsystem.DeviceN(1) + ",,,INC1\n" +
	"not-a-guid,,,INC2\n" +
	testsystem.DeviceN(3) + ",,,INC3,surplus\n" +
	testsystem.DeviceN(4) + ",user@contoso.com,app-1,INC4\n" +
	testsystem.DeviceN(5) + ",,,INC5\n"

var badLines = []string{
	`line 3: invalid managedDeviceId "not-a-guid": must be a GUID`,
	"line 4: 5 values, but the header names 4 columns",
	`line 5: invalid detectedAppId "app-1": must not be set together with userId`,
}

// TestBadRowsPublishNothing: --dry-run and a run without --skip-invalid
// name every bad row's line and reason, exit non-zero, and publish
// nothing; --skip-invalid lists them and submits the rest.
func TestBadRowsPublishNothing(t *testing.T) {
	t.Parallel()
	sys := testsystem.Start(t, graphsim.Config{})
	file := writeFile(t, "devices.csv", badFile)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"dry run", []string{"--dry-run"}, "dry run: 3 bad row(s); nothing was published"},
		{"no --skip-invalid", nil, "refused: 3 bad row(s); nothing was published. Fix them, or pass --skip-invalid to submit the other 2 row(s)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inv := enqueue(t.Context(), t, sys, append([]string{"--file", file}, tc.args...)...)
			if inv.code != exitFailed {
				t.Errorf("exit %d, want %d", inv.code, exitFailed)
			}
			for _, want := range append(badLines, tc.want) {
				if !strings.Contains(inv.stdout, want) {
					t.Errorf("output lacks %q:\n%s", want, inv)
				}
			}
			if n := jobsStored(t, sys); n != 0 {
				t.Errorf("%d jobs published", n)
			}
		})
	}
	t.Run("--skip-invalid", func(t *testing.T) {
		inv := enqueue(t.Context(), t, sys, "--file", file, "--skip-invalid")
		if inv.code != exitOK {
			t.Fatalf("%s", inv)
		}
		for _, want := range append(badLines, "published 2 job(s)") {
			if !strings.Contains(inv.stdout, want) {
				t.Errorf("output lacks %q:\n%s", want, inv)
			}
		}
		if n := jobsStored(t, sys); n != 2 {
			t.Errorf("%d jobs published, want 2", n)
		}
	})
}

// TestFileErrors: problems with the file as a whole, or with the flags,
// stop the command before it connects anywhere.
func TestFileErrors(t *testing.T) {
	t.Parallel()
	dev := testsystem.DeviceN(1)
	for _, tc := range []struct {
		name, file string
		args       []string
		want       string
	}{
		{"unknown column", "managedDeviceId,Device name\n" + dev + ",x\n", nil, `line 1: unknown column "Device name"`},
		{"no device column", "userId\nuser@contoso.com\n", nil, "line 1: no managedDeviceId, azureADDeviceId or serialNumber column"},
		{"empty file", "", nil, "file is empty"},
		{"JSONL unknown field", `{"managedDeviceId":"` + dev + `","colour":"red"}` + "\n", []string{"--dry-run"}, `line 1: unknown field "colour"`},
		{"bad batch name", "managedDeviceId\n" + dev + "\n", []string{"--batch", "a.b"}, `--batch "a.b"`},
		{"--device with --file", "managedDeviceId\n" + dev + "\n", []string{"--device", dev}, "--device does not go with --file"},
		{"--output without --wait", "managedDeviceId\n" + dev + "\n", []string{"--output", "x.csv"}, "--output needs --wait"},
		{"--output of unknown kind", "managedDeviceId\n" + dev + "\n", []string{"--wait", "--output", "x.txt"}, "name it .csv or .jsonl"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			name := "devices.csv"
			if strings.HasPrefix(tc.file, "{") {
				name = "devices.jsonl"
			}
			file := writeFile(t, name, tc.file)
			// No server: nothing may be needed to find these problems.
			inv := enqueue(t.Context(), t, nil, append([]string{"--file", file, "--nats-url", "nats://127.0.0.1:1"}, tc.args...)...)
			if inv.code != exitFailed {
				t.Errorf("exit %d, want %d", inv.code, exitFailed)
			}
			if !strings.Contains(inv.stdout+inv.stderr, tc.want) {
				t.Errorf("output lacks %q:\n%s", tc.want, inv)
			}
		})
	}
}

// TestDuplicateRowsAreSubmittedOnce: two rows naming one device (in any
// case, through any path form) are one job, and the second is reported.
func TestDuplicateRowsAreSubmittedOnce(t *testing.T) {
	t.Parallel()
	sys := testsystem.Start(t, graphsim.Config{})
	dev := testsystem.DeviceN(7)
	file := writeFile(t, "devices.csv", "managedDeviceId,userId\n"+dev+",\n"+testsystem.DeviceN(8)+",\n"+strings.ToUpper(dev)+",user@contoso.com\n")
	inv := enqueue(t.Context(), t, sys, "--file", file)
	if inv.code != exitOK {
		t.Fatalf("%s", inv)
	}
	want := "duplicate: line 4: device " + strings.ToUpper(dev) + " is already on line 2; submitted once"
	if !strings.Contains(inv.stdout, want) || !strings.Contains(inv.stdout, "published 2 job(s)") {
		t.Errorf("output lacks %q or 2 jobs published:\n%s", want, inv)
	}
}

// TestStandardInput: --file - reads JSON Lines (or CSV) from standard input.
func TestStandardInput(t *testing.T) {
	// Not parallel: it replaces the package's stdin.
	defer func(r io.Reader) { stdin = r }(stdin)
	stdin = strings.NewReader(`{"managedDeviceId":"` + testsystem.DeviceN(1) + `","ticket":"INC1"}` + "\n" +
		`{"managedDeviceId":"` + testsystem.DeviceN(2) + `","userId":"adele@contoso.com"}` + "\n")
	inv := enqueue(t.Context(), t, nil, "--file", "-", "--dry-run", "--batch", "stdin")
	if inv.code != exitOK || !strings.Contains(inv.stdout, "dry run: 2 job(s) would be published to recoverpasscode.jobs.batch") {
		t.Errorf("%s", inv)
	}
}
