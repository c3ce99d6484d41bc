package batch_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/recoverpasscode/recoverpasscode/batch"
	"github.com/recoverpasscode/recoverpasscode/wire"
)

const (
	dev1   = "2d6a3d0e-8f5c-4d7a-9b1e-000000000001"
	dev2   = "2d6a3d0e-8f5c-4d7a-9b1e-000000000002"
	tenant = "33333333-3333-4333-8333-333333333333"
)

func read(t *testing.T, content string, opts batch.Options) *batch.Batch {
	t.Helper()
	b, err := batch.Read(strings.NewReader(content), opts)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestReadRows: what a row becomes, in either format, and what is wrong
// with a bad one, by line.
func TestReadRows(t *testing.T) {
	for _, tc := range []struct {
		name     string
		content  string
		rows     int
		problems []string
	}{
		{"CSV, header in any case, spaces trimmed", "MANAGEDDEVICEID , ticket\n " + dev1 + " ,INC1\n", 1, nil},
		{"CSV with a byte order mark and CRLF", "\uFEFFmanagedDeviceId,userId\r\n" + dev1 + ",user@contoso.com\r\n", 1, nil},
		{"CSV with semicolons", "managedDeviceId;ticket\n" + dev1 + ";INC1\n" + dev2 + ";INC2\n", 2, nil},
		{"CSV blank rows skipped", "managedDeviceId,ticket\n,\n" + dev1 + ",INC1\n\n", 1, nil},
		{"CSV missing and surplus values", "managedDeviceId,ticket\n" + dev1 + "\n" + dev2 + ",a,b\n", 0,
			[]string{"line 2: 1 values, but the header names 2 columns", "line 3: 3 values, but the header names 2 columns"}},
		{"CSV bad quoting", "managedDeviceId,ticket\n" + dev1 + `,"INC1` + "\n", 0, []string{"line 2: not valid CSV"}},
		{"CSV bad values", "managedDeviceId,tenantId,userId,detectedAppId,ticket\n" +
			"abc,,,,\n" +
			dev1 + ",not-a-tenant,,,\n" +
			dev2 + ",,a@b.com,app,\n" +
			dev2 + ",,,,tab\there\n", 0,
			[]string{`line 2: invalid managedDeviceId "abc": must be a GUID`, `line 3: invalid tenantId "not-a-tenant": must be a GUID`,
				`line 4: invalid detectedAppId "app": must not be set together with userId`, "line 5: ticket: contains the control character U+0009"}},
		{"JSONL", `{"managedDeviceId":"` + dev1 + `","Ticket":"INC1","userId":null}` + "\n\n" + `{"managedDeviceId":"` + dev2 + `"}`, 2, nil},
		{"JSONL bad rows", `{"managedDeviceId":"` + dev1 + `","colour":"red"}` + "\n" + `{"managedDeviceId":7}` + "\n[1]\n", 0,
			[]string{`line 1: unknown field "colour"`, "line 2: managedDeviceId: want a string", "line 3: not a JSON object"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := read(t, tc.content, batch.Options{})
			if len(b.Rows) != tc.rows {
				t.Errorf("%d rows, want %d", len(b.Rows), tc.rows)
			}
			if len(b.Problems) != len(tc.problems) {
				t.Fatalf("problems %v, want %v", b.Problems, tc.problems)
			}
			for i, p := range b.Problems {
				if !strings.HasPrefix(p.String(), tc.problems[i]) {
					t.Errorf("problem %q, want it to start with %q", p, tc.problems[i])
				}
			}
		})
	}
}

// TestReadFileErrors: a file that cannot be used at all says why, with the
// line when there is one.
func TestReadFileErrors(t *testing.T) {
	for _, tc := range []struct{ name, content, want string }{
		{"empty", "", "batch: file is empty"},
		{"unknown column", "managedDeviceId,Serial number\n", `batch: line 1: unknown column "Serial number"`},
		{"column twice", "managedDeviceId,ManagedDeviceID\n", "batch: line 1: column managedDeviceId appears twice"},
		{"no device column", "userId,ticket\n", "batch: line 1: no managedDeviceId, azureADDeviceId or serialNumber column"},
		{"not UTF-8", "managedDeviceId\n\xff\xfe\n", "batch: file is not UTF-8"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := batch.Read(strings.NewReader(tc.content), batch.Options{Format: batch.CSV})
			var fe *batch.FileError
			if !errors.As(err, &fe) || !strings.HasPrefix(err.Error(), tc.want) {
				t.Errorf("error %v, want a FileError starting %q", err, tc.want)
			}
		})
	}
}

// TestJobs: every job gets the batch's derived id, key and reply subject,
// the defaults for empty fields, and passes the worker's validation.
func TestJobs(t *testing.T) {
	notAfter := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	b := read(t, "managedDeviceId,ticket,tenantId\n"+dev1+",,\n"+dev2+",INC2,"+tenant+"\n", batch.Options{
		Name:     "may",
		Defaults: batch.Defaults{TenantID: "44444444-4444-4444-8444-444444444444", Ticket: "CHG1", RequestedBy: "ops", NotAfter: &notAfter},
	})
	if len(b.Rows) != 2 || b.Name != "may" || b.NameDerived || b.Source != "batch" {
		t.Fatalf("batch %+v", b)
	}
	j1, j2 := b.Rows[0].Job, b.Rows[1].Job
	if j1.Ticket != "CHG1" || j2.Ticket != "INC2" || j1.RequestedBy != "ops" || j2.TenantID != tenant || j1.TenantID != "44444444-4444-4444-8444-444444444444" || j1.NotAfter != &notAfter {
		t.Errorf("defaults not applied: %+v %+v", j1, j2)
	}
	for _, r := range b.Rows {
		j := r.Job
		if !strings.HasPrefix(j.ID, "may-") || j.IdempotencyKey != "batch/may/"+strings.TrimPrefix(j.ID, "may-") ||
			j.ReplyTo != "recoverpasscode.results.batch.may."+j.ID {
			t.Errorf("row %d: id %s, key %s, reply %s", r.Line, j.ID, j.IdempotencyKey, j.ReplyTo)
		}
		check := j
		if err := (wire.Policy{Tenants: []string{tenant, j1.TenantID}}).Validate(&check); err != nil {
			t.Errorf("row %d: the worker would reject it: %v", r.Line, err)
		}
		if got, ok := b.Row(j.ID + "-r12"); !ok || got.Line != r.Line {
			t.Errorf("a replay of row %d does not find its row", r.Line)
		}
	}
	if b.Tenants() != 2 {
		t.Errorf("%d tenants, want 2", b.Tenants())
	}
}

// TestDuplicates: one device in two rows, whatever its case and path
// form, is one job; the later row is reported.
func TestDuplicates(t *testing.T) {
	b := read(t, "managedDeviceId,userId\n"+dev1+",\n"+dev2+",\n"+strings.ToUpper(dev1)+",user@contoso.com\n", batch.Options{})
	if len(b.Rows) != 2 || len(b.Duplicates) != 1 {
		t.Fatalf("%d rows, %d duplicates", len(b.Rows), len(b.Duplicates))
	}
	want := "line 4: device " + strings.ToUpper(dev1) + " is already on line 2; submitted once"
	if got := b.Duplicates[0].String(); got != want {
		t.Errorf("duplicate %q, want %q", got, want)
	}
}

// TestDerivedName: the name depends on the set of devices only.
func TestDerivedName(t *testing.T) {
	base := read(t, "managedDeviceId,ticket\n"+dev1+",a\n"+dev2+",b\n", batch.Options{}).Name
	if !strings.HasPrefix(base, "auto-") || !batch.ValidName(base) {
		t.Fatalf("derived name %q", base)
	}
	for _, tc := range []struct {
		name, content string
		same          bool
	}{
		{"rows reordered, other columns, other case, CRLF", "ticket,ManagedDeviceId\r\nx," + strings.ToUpper(dev2) + "\r\ny," + dev1 + "\r\n", true},
		{"JSONL", `{"managedDeviceId":"` + dev1 + `"}` + "\n" + `{"managedDeviceId":"` + dev2 + `"}`, true},
		{"a device fewer", "managedDeviceId\n" + dev1 + "\n", false},
		{"another tenant", "managedDeviceId,tenantId\n" + dev1 + "," + tenant + "\n" + dev2 + "," + tenant + "\n", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := read(t, tc.content, batch.Options{}).Name
			if (got == base) != tc.same {
				t.Errorf("name %s against %s: same = %v, want %v", got, base, got == base, tc.same)
			}
		})
	}
}

// TestReplayIDs: replays of a dead letter get ids and keys that are
// stable per dead letter, stay within the limits, and map back to the row.
func TestReplayIDs(t *testing.T) {
	long := strings.Repeat("a", 128)
	for _, tc := range []struct {
		id   string
		seq  uint64
		want string
	}{
		{"may-0123456789abcdef0123", 7, "may-0123456789abcdef0123-r7"},
		{"may-0123456789abcdef0123-r7", 9, "may-0123456789abcdef0123-r9"},
		{long, 12, strings.Repeat("a", 124) + "-r12"},
	} {
		got := batch.ReplayID(tc.id, tc.seq)
		if got != tc.want || len(got) > 128 {
			t.Errorf("ReplayID(%q, %d) = %q, want %q", tc.id, tc.seq, got, tc.want)
		}
	}
	if got := batch.RowID("may-0123456789abcdef0123-r9"); got != "may-0123456789abcdef0123" {
		t.Errorf("RowID = %q", got)
	}
	if got := batch.ReplayKey("batch/may/0123/r7", 9); got != "batch/may/0123/r9" {
		t.Errorf("ReplayKey = %q", got)
	}
	if got := batch.ReplayKey("INC1/r", 9); got != "INC1/r/r9" {
		t.Errorf("ReplayKey of a key ending in /r = %q", got)
	}
}
