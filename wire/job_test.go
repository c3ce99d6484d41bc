package wire

import (
	"strings"
	"testing"
	"time"
)

const device = "2d6a3d0e-8f5c-4d7a-9b1e-0b2f3c4d5e6f"
const tenant = "11111111-1111-4111-8111-111111111111"

func TestDecodeDefaults(t *testing.T) {
	meta := Meta{Source: "ticketing", Stream: "S", Sequence: 7, Timestamp: time.Unix(100, 5)}
	t.Run("id from the message header", func(t *testing.T) {
		j, err := Decode([]byte(`{"managedDeviceId":"`+device+`"}`), Meta{MsgID: "abc-1"})
		if err != nil || j.ID != "abc-1" || j.IdempotencyKey != "abc-1" {
			t.Fatalf("got %+v, %v", j, err)
		}
	})
	t.Run("id derived from the stream position, stable", func(t *testing.T) {
		a, err := Decode([]byte(`{"managedDeviceId":"`+device+`"}`), meta)
		b, _ := Decode([]byte(`{"managedDeviceId":"`+device+`"}`), meta)
		if err != nil || a.ID == "" || a.ID != b.ID {
			t.Fatalf("ids %q and %q, err %v", a.ID, b.ID, err)
		}
		other := meta
		other.Sequence++
		c, _ := Decode([]byte(`{"managedDeviceId":"`+device+`"}`), other)
		if c.ID == a.ID {
			t.Fatal("two messages got the same derived id")
		}
	})
	t.Run("explicit id and key win", func(t *testing.T) {
		j, err := Decode([]byte(`{"id":"j1","idempotencyKey":"INC1/x","managedDeviceId":"`+device+`"}`), Meta{MsgID: "h"})
		if err != nil || j.ID != "j1" || j.IdempotencyKey != "INC1/x" {
			t.Fatalf("got %+v, %v", j, err)
		}
	})
}

func TestDecodeAndValidateRejections(t *testing.T) {
	policy := Policy{DefaultTenant: tenant}
	long := strings.Repeat("a", MaxSize)
	tests := []struct {
		name, data, want string
	}{
		{"empty", ``, "empty"},
		{"not JSON", `{"managedDeviceId":`, "not valid JSON"},
		{"array", `[1]`, "want a JSON object"},
		{"unknown field", `{"managedDeviceId":"` + device + `","color":"red"}`, `unknown field "color"`},
		{"trailing data", `{"managedDeviceId":"` + device + `"} {}`, "data after the object"},
		{"wrong type", `{"managedDeviceId":42}`, "managedDeviceId"},
		{"invalid UTF-8", "{\"managedDeviceId\":\"\xff\"}", "UTF-8"},
		{"oversize", `{"ticket":"` + long + `"}`, "more than the"},
		{"missing device", `{}`, "managedDeviceId"},
		{"device not a GUID", `{"managedDeviceId":"not-a-guid"}`, "managedDeviceId"},
		{"userId path traversal", `{"managedDeviceId":"` + device + `","userId":"a/../b"}`, "userId"},
		{"userId query", `{"managedDeviceId":"` + device + `","userId":"x?y"}`, "userId"},
		{"user and detected app", `{"managedDeviceId":"` + device + `","userId":"` + device + `","detectedAppId":"app1"}`, "together with userId"},
		{"tenant not allowed", `{"managedDeviceId":"` + device + `","tenantId":"22222222-2222-4222-8222-222222222222"}`, "RECOVER_TENANTS"},
		{"bad notAfter", `{"managedDeviceId":"` + device + `","notAfter":"tomorrow"}`, "notAfter"},
		{"control char in ticket", `{"managedDeviceId":"` + device + `","ticket":"INC1\r\nX-Evil: 1"}`, "ticket"},
		{"bad reply subject", `{"managedDeviceId":"` + device + `","replyTo":"a.>"}`, "replyTo"},
		{"bad id", `{"id":"a.b","managedDeviceId":"` + device + `"}`, "id:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			j, err := Decode([]byte(tt.data), Meta{MsgID: "m1"})
			if err == nil {
				err = policy.Validate(&j)
			}
			if err == nil {
				t.Fatalf("accepted %s", tt.data)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q does not mention %q", err, tt.want)
			}
			if j.ID == "" {
				t.Fatal("a rejected job has no id to answer with")
			}
		})
	}
}

func TestValidateFillsDefaultTenant(t *testing.T) {
	j, err := Decode([]byte(`{"managedDeviceId":"`+device+`","userId":"helpdesk@contoso.com"}`), Meta{MsgID: "m"})
	if err != nil {
		t.Fatal(err)
	}
	if err := (Policy{DefaultTenant: tenant}).Validate(&j); err != nil {
		t.Fatal(err)
	}
	if j.TenantID != tenant {
		t.Fatalf("tenant %q", j.TenantID)
	}
}

func TestReplyToStaysWithinTheSourcesResults(t *testing.T) {
	p := Policy{DefaultTenant: tenant}
	for _, ok := range []string{"", "_INBOX.abc", "recoverpasscode.results.ticketing.x", "recoverpasscode.results.ticketing.batch7.x", "other.subject"} {
		if err := p.CheckReplyTo(ok, "ticketing"); err != nil {
			t.Errorf("%q refused: %v", ok, err)
		}
	}
	for _, bad := range []string{"recoverpasscode.results.batch.x", "recoverpasscode.jobs.ticketing", "recoverpasscode.dlq.ticketing", "recoverpasscode.audit.ticketing", "recoverpasscode.audit.ticketing.9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d.0f6a7a2c-3d1e-4a6b-9c1d-2b7e8f9a0b1c", "recoverpasscode", "recoverpasscode.results.ticketing"} {
		if err := p.CheckReplyTo(bad, "ticketing"); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestReplyToInboxPerSource(t *testing.T) {
	for _, tc := range []struct {
		name     string
		perSrc   bool
		replyTo  string
		accepted bool
	}{
		{"off: a plain inbox", false, "_INBOX.abc", true},
		{"off: another source's inbox", false, "_INBOX.batch.abc", true},
		{"on: the source's own inbox", true, "_INBOX.ticketing.abc", true},
		{"on: a request inbox of the source", true, "_INBOX.ticketing.abc.7", true},
		{"on: its own results still", true, "recoverpasscode.results.ticketing.x", true},
		{"on: a subject outside inboxes and the prefix", true, "other.subject", true},
		{"on: no reply subject", true, "", true},
		{"on: a plain inbox", true, "_INBOX.abc", false},
		{"on: another source's inbox", true, "_INBOX.batch.abc", false},
		{"on: the worker's inbox", true, "_INBOX.worker.abc", false},
		{"on: a longer name that starts with the source's", true, "_INBOX.ticketing2.abc", false},
		{"on: the source's inbox prefix itself", true, "_INBOX.ticketing", false},
		{"on: other sources' results still refused", true, "recoverpasscode.results.batch.x", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := Policy{DefaultTenant: tenant, InboxPerSource: tc.perSrc}
			err := p.CheckReplyTo(tc.replyTo, "ticketing")
			if err == nil {
				if !tc.accepted {
					t.Fatalf("%q accepted", tc.replyTo)
				}
				return
			}
			if tc.accepted {
				t.Fatalf("%q refused: %v", tc.replyTo, err)
			}
			if !strings.HasPrefix(err.Error(), "replyTo: ") {
				t.Errorf("the reason does not name the field: %v", err)
			}
			if strings.HasPrefix(tc.replyTo, "_INBOX.") && !strings.Contains(err.Error(), "_INBOX.ticketing.") {
				t.Errorf("the reason does not say which inboxes are answered: %v", err)
			}
		})
	}
}
