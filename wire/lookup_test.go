package wire_test

import (
	"net/url"
	"strings"
	"testing"

	"github.com/recoverpasscode/recoverpasscode/wire"
)

func TestValidateNamesTheDeviceExactlyOneWay(t *testing.T) {
	p := wire.Policy{DefaultTenant: tenantA}
	tests := []struct {
		name string
		job  wire.Job
		bad  string // a word of the error, "" when valid
	}{
		{"managed device", wire.Job{ManagedDeviceID: deviceID}, ""},
		{"azure AD device", wire.Job{AzureADDeviceID: userGUID}, ""},
		{"serial", wire.Job{SerialNumber: "C02XL0GRJGH5"}, ""},
		{"VMware serial", wire.Job{SerialNumber: "VMware-56 4d 8f a1-b2 c3"}, ""},
		{"serial through a user", wire.Job{SerialNumber: "ABC123", UserID: "a@b.cd"}, ""},
		{"none", wire.Job{}, "required"},
		{"two", wire.Job{ManagedDeviceID: deviceID, SerialNumber: "ABC"}, "exactly one"},
		{"three", wire.Job{ManagedDeviceID: deviceID, AzureADDeviceID: userGUID, SerialNumber: "ABC"}, "exactly one"},
		{"azure AD not a GUID", wire.Job{AzureADDeviceID: "abc"}, "GUID"},
		{"azure AD with a quote", wire.Job{AzureADDeviceID: "0f8fad5b-d9cb-469f-a165-70867728950'"}, "GUID"},
		{"serial with a quote", wire.Job{SerialNumber: "x' or 1 eq 1 or serialNumber eq 'y"}, "may hold only"},
		{"serial with OData operators", wire.Job{SerialNumber: "a)&$filter=(id"}, "may hold only"},
		{"serial leading space", wire.Job{SerialNumber: " ABC"}, "space"},
		{"serial too long", wire.Job{SerialNumber: strings.Repeat("A", 129)}, "1 to 128"},
		{"serial with a user that is wrong", wire.Job{SerialNumber: "ABC", UserID: "nope"}, "userId"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			j := tt.job
			j.ID, j.IdempotencyKey = "job-1", "job-1"
			err := p.Validate(&j)
			switch {
			case tt.bad == "" && err != nil:
				t.Fatalf("Validate: %v", err)
			case tt.bad != "" && (err == nil || !strings.Contains(err.Error(), tt.bad)):
				t.Fatalf("Validate = %v; want an error saying %q", err, tt.bad)
			}
		})
	}
}

func TestLookupQuery(t *testing.T) {
	q, err := wire.Lookup{Field: wire.FieldSerialNumber, Value: "VMware-56 4d/8f:a1"}.Query()
	if err != nil {
		t.Fatal(err)
	}
	if want := "$filter=serialNumber%20eq%20%27VMware-56%204d%2F8f%3Aa1%27&$select=id"; q != want {
		t.Fatalf("Query = %s; want %s", q, want)
	}
	if _, err := (wire.Lookup{Field: wire.FieldAzureADDeviceID, Value: "x'"}).Query(); err == nil {
		t.Fatal("Query accepted a quote")
	}
}

// FuzzDeviceFilter checks that no value passing Validate can change the
// resolving read's query: it parses back to exactly $filter and $select,
// the filter is one comparison of the field with one string literal, and
// the literal is the value.
func FuzzDeviceFilter(f *testing.F) {
	for _, s := range []string{"ABC123", "x' or 1 eq 1", "a&$top=1", "a%27b", "a''b", "a)or(b", "a b", "a+b", "ä", "\x00", deviceID} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, value string) {
		for _, field := range []string{wire.FieldAzureADDeviceID, wire.FieldSerialNumber} {
			l := wire.Lookup{Field: field, Value: value}
			q, err := l.Query()
			if err != nil {
				continue
			}
			vals, err := url.ParseQuery(q)
			if err != nil {
				t.Fatalf("query %q does not parse: %v", q, err)
			}
			if len(vals) != 2 || len(vals["$filter"]) != 1 || len(vals["$select"]) != 1 || vals.Get("$select") != "id" {
				t.Fatalf("value %q gave query %q: %v", value, q, vals)
			}
			filter := vals.Get("$filter")
			lit, ok := strings.CutPrefix(filter, field+" eq '")
			if !ok || !strings.HasSuffix(lit, "'") {
				t.Fatalf("value %q gave filter %q", value, filter)
			}
			lit = strings.TrimSuffix(lit, "'")
			// An OData string literal holds a quote only doubled.
			if strings.Contains(strings.ReplaceAll(lit, "''", ""), "'") {
				t.Fatalf("value %q ends the literal early in filter %q", value, filter)
			}
			if got := strings.ReplaceAll(lit, "''", "'"); got != value {
				t.Fatalf("filter %q holds %q; want %q", filter, got, value)
			}
		}
	})
}
