package writeback_test

import (
	"strings"
	"testing"
	"time"

	"github.com/recoverpasscode/recoverpasscode/wire"
	"github.com/recoverpasscode/recoverpasscode/writeback"
	"github.com/recoverpasscode/recoverpasscode/writeback/jirasim"
	"github.com/recoverpasscode/recoverpasscode/writeback/servicenowsim"
)

// TestServiceNowWorkNote: a result for INC0012345 ends as one work note on
// that record and none on any other, through basic auth and through OAuth
// client credentials.
func TestServiceNowWorkNote(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	snow := servicenowsim.New(servicenowsim.Config{User: "svc-recover", Password: "basic-pw-0123", ClientID: "recover-app", ClientSecret: "client-secret-0123"})
	t.Cleanup(snow.Close)
	target := snow.AddRecord("incident", "INC0012345")
	other := snow.AddRecord("incident", "INC0012346")
	snow.AddRecord("incident", "INC00123450") // a number the target's is a prefix of

	cfg := testConfig(
		writeback.Source{Name: "ticketing", ServiceNow: &writeback.ServiceNow{Instance: snow.URL(), User: "svc-recover", Password: "basic-pw-0123"}},
		writeback.Source{Name: "automation", ServiceNow: &writeback.ServiceNow{Instance: snow.URL(), ClientID: "recover-app", ClientSecret: "client-secret-0123"}},
	)
	cfg.TLS = snow.TLSConfig()
	h.start(h.js, cfg)

	res := sampleResult("job-snow-1", "INC0012345")
	h.publish(res)
	oauth := sampleResult("job-snow-2", "INC0012346")
	oauth.Source = "automation"
	h.publish(oauth)
	must(t, snow.WaitNotes(waitCtx(t), func(n []servicenowsim.Note) bool { return len(n) >= 2 }), "two work notes")
	h.settled("ticketing", "servicenow")
	h.settled("automation", "servicenow")

	notes := snow.Notes()
	if len(notes) != 2 {
		t.Fatalf("%d work notes, want 2: %+v", len(notes), notes)
	}
	byNumber := map[string]servicenowsim.Note{}
	for _, n := range notes {
		byNumber[n.Number] = n
	}
	basic, ok := byNumber["INC0012345"]
	if !ok || basic.SysID != target || basic.Auth != "basic" {
		t.Fatalf("the work note for INC0012345: %+v", notes)
	}
	if n := byNumber["INC0012346"]; n.SysID != other || n.Auth != "oauth" {
		t.Errorf("the OAuth source's work note: %+v", n)
	}
	for _, want := range []string{res.ManagedDeviceID, "succeeded", res.Graph.RequestID, res.RequestedBy, "2026-05-01T10:00:02Z"} {
		if !strings.Contains(basic.Text, want) {
			t.Errorf("the work note lacks %q:\n%s", want, basic.Text)
		}
	}
	if q := snow.Queries(); len(q) != 2 || q[0] != "number=INC0012345" && q[1] != "number=INC0012345" {
		t.Errorf("queries %q", q)
	}
}

// TestTicketsThatNameNoRecord: a ticket that is missing, not a record
// number (an encoded-query operator included) or not an issue key ends as
// its own failed delivery, and nothing reaches the instance or the site.
func TestTicketsThatNameNoRecord(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	snow := servicenowsim.New(servicenowsim.Config{User: "u", Password: "password-0123"})
	t.Cleanup(snow.Close)
	snow.AddRecord("incident", "INC1")
	snow.AddRecord("incident", "INC2")
	snow.AddRecord("incident", "inc2") // numbers match case-insensitively
	jira := jirasim.New(jirasim.Config{Email: "svc@example.com", APIToken: "api-token-0123"})
	t.Cleanup(jira.Close)
	jira.AddIssue("ITSM-1")
	cfg := testConfig(writeback.Source{Name: "ticketing",
		ServiceNow: &writeback.ServiceNow{Instance: snow.URL(), User: "u", Password: "password-0123"},
		Jira:       &writeback.Jira{Site: jira.URL(), Email: "svc@example.com", APIToken: "api-token-0123"},
	})
	cfg.TLS = trusting(snow.Certificate(), jira.Certificate())
	h.start(h.js, cfg)

	cases := map[string]struct {
		ticket     string
		snow, jira writeback.Outcome
	}{
		"job-none":   {"", writeback.OutcomeNoTicket, writeback.OutcomeNoTicket},
		"job-or":     {"INC1^ORnumber=INC2", writeback.OutcomeInvalidTicket, writeback.OutcomeInvalidTicket},
		"job-nq":     {"INC1^NQactive=true", writeback.OutcomeInvalidTicket, writeback.OutcomeInvalidTicket},
		"job-space":  {"INC1 LIKE x", writeback.OutcomeInvalidTicket, writeback.OutcomeInvalidTicket},
		"job-lower":  {"itsm-1", writeback.OutcomeNotFound, writeback.OutcomeInvalidTicket},
		"job-absent": {"INC404", writeback.OutcomeNotFound, writeback.OutcomeInvalidTicket},
		"job-nokey":  {"ITSM-404", writeback.OutcomeNotFound, writeback.OutcomeNotFound},
		"job-twice":  {"INC2", writeback.OutcomeAmbiguous, writeback.OutcomeInvalidTicket},
	}
	for id, c := range cases {
		h.publish(sampleResult(id, c.ticket))
	}
	for _, kind := range []string{"servicenow", "jira"} {
		got := h.failures(writeback.Filter{Source: "ticketing", Endpoint: kind}, len(cases))
		for _, f := range got {
			want := cases[f.JobID].snow
			if kind == "jira" {
				want = cases[f.JobID].jira
			}
			if f.Outcome != want || f.Reason == "" || f.Kind != kind || f.WebhookID != f.JobID+"/result" || f.ResultSequence == 0 {
				t.Errorf("%s %s (ticket %q): %+v, want outcome %s", kind, f.JobID, cases[f.JobID].ticket, f, want)
			}
		}
	}
	for _, q := range snow.Queries() {
		if q != "number=itsm-1" && q != "number=INC404" && q != "number=ITSM-404" && q != "number=INC2" {
			t.Errorf("the instance was asked %q", q)
		}
	}
	if n := len(snow.Notes()) + len(jira.Comments()); n != 0 {
		t.Errorf("%d notes or comments written", n)
	}
}

// TestJiraComment: a result for ITSM-42 ends as one internal comment on
// that issue, in Atlassian Document Format, through an API token and
// through a bearer token.
func TestJiraComment(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	jira := jirasim.New(jirasim.Config{Email: "svc@example.com", APIToken: "api-token-0123", Bearer: "bearer-token-0123"})
	t.Cleanup(jira.Close)
	jira.AddIssue("ITSM-42")
	jira.AddIssue("ITSM-43")
	jira.AddIssue("OPS-7")
	cfg := testConfig(
		writeback.Source{Name: "ticketing", Jira: &writeback.Jira{Site: jira.URL(), Email: "svc@example.com", APIToken: "api-token-0123"}},
		writeback.Source{Name: "automation", Jira: &writeback.Jira{Site: jira.URL(), Bearer: "bearer-token-0123", Public: true}},
	)
	cfg.TLS = jira.TLSConfig()
	h.start(h.js, cfg)
	res := sampleResult("job-jira-1", "ITSM-42")
	h.publish(res)
	bearer := sampleResult("job-jira-2", "OPS-7")
	bearer.Source = "automation"
	h.publish(bearer)
	must(t, jira.WaitComments(waitCtx(t), func(c []jirasim.Comment) bool { return len(c) >= 2 }), "two comments")
	h.settled("ticketing", "jira")
	h.settled("automation", "jira")
	comments := jira.Comments()
	if len(comments) != 2 {
		t.Fatalf("%d comments, want 2: %+v", len(comments), comments)
	}
	for _, c := range comments {
		switch c.Key {
		case "ITSM-42":
			if c.Auth != "basic" || !c.Internal {
				t.Errorf("ITSM-42: %+v, want an internal comment with basic auth", c)
			}
			for _, want := range []string{res.ManagedDeviceID, res.Graph.RequestID, res.RequestedBy} {
				if !strings.Contains(c.Text, want) {
					t.Errorf("the comment lacks %q:\n%s", want, c.Text)
				}
			}
		case "OPS-7":
			if c.Auth != "bearer" || c.Internal {
				t.Errorf("OPS-7: %+v, want a public comment with a bearer token", c)
			}
		default:
			t.Errorf("a comment on %s", c.Key)
		}
	}
}

// TestWrongCredentials: a ServiceNow password, OAuth client secret or Jira
// API token that the other side refuses ends, after the attempts a client
// error gets, as a rejected delivery with the status, and no failure
// holds the credential.
func TestWrongCredentials(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	snow := servicenowsim.New(servicenowsim.Config{User: "svc", Password: "right-password", ClientID: "app", ClientSecret: "right-secret"})
	t.Cleanup(snow.Close)
	snow.AddRecord("incident", "INC1")
	jira := jirasim.New(jirasim.Config{Email: "svc@example.com", APIToken: "right-token"})
	t.Cleanup(jira.Close)
	jira.AddIssue("ITSM-1")
	cfg := testConfig(
		writeback.Source{Name: "basic", ServiceNow: &writeback.ServiceNow{Instance: snow.URL(), User: "svc", Password: "wrong-password"}},
		writeback.Source{Name: "oauth", ServiceNow: &writeback.ServiceNow{Instance: snow.URL(), ClientID: "app", ClientSecret: "wrong-secret"}},
		writeback.Source{Name: "jira", Jira: &writeback.Jira{Site: jira.URL(), Email: "svc@example.com", APIToken: "wrong-token"}},
	)
	cfg.TLS = trusting(snow.Certificate(), jira.Certificate())
	h.start(h.js, cfg)
	for src, ticket := range map[string]string{"basic": "INC1", "oauth": "INC1", "jira": "ITSM-1"} {
		r := sampleResult("job-"+src, ticket)
		r.Source = src
		h.publish(r)
	}
	for src, want := range map[string]string{"basic": "GET answered 401", "oauth": "OAuth token request answered 401 invalid_client", "jira": "POST answered 401"} {
		f := h.failures(writeback.Filter{Source: src}, 1)[0]
		if f.Outcome != writeback.OutcomeRejected || f.Status != 401 || f.Attempts != cfg.ClientErrorAttempts || !strings.Contains(f.Reason, want) {
			t.Errorf("%s: %+v, want rejected after %d attempts with %q", src, f, cfg.ClientErrorAttempts, want)
		}
		if s := f.Reason + f.Body; strings.Contains(s, "wrong-") {
			t.Errorf("%s: the failure holds the credential: %s", src, s)
		}
	}
	if n := len(snow.Notes()) + len(jira.Comments()); n != 0 {
		t.Errorf("%d notes or comments written with wrong credentials", n)
	}
}

// TestTicketsGetTheConfirmation: a followed job's confirmation becomes a
// second work note (ServiceNow) or comment (Jira) on the ticket after the
// result's: the device did it, failed, or it is not known, with the
// device's name and last check-in.
func TestTicketsGetTheConfirmation(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	snow := servicenowsim.New(servicenowsim.Config{User: "u", Password: "password-0123"})
	t.Cleanup(snow.Close)
	snow.AddRecord("incident", "INC0012345")
	jira := jirasim.New(jirasim.Config{Email: "svc@example.com", APIToken: "api-token-0123"})
	t.Cleanup(jira.Close)
	jira.AddIssue("ITSM-1")
	jira.AddIssue("ITSM-2")
	cfg := testConfig(
		writeback.Source{Name: "ticketing", ServiceNow: &writeback.ServiceNow{Instance: snow.URL(), User: "u", Password: "password-0123"}},
		writeback.Source{Name: "jiraops", Jira: &writeback.Jira{Site: jira.URL(), Email: "svc@example.com", APIToken: "api-token-0123"}},
	)
	cfg.TLS = trusting(snow.Certificate(), jira.Certificate())
	h.start(h.js, cfg)

	synced := time.Date(2026, 5, 1, 10, 3, 4, 0, time.UTC)
	jobs := []struct {
		source, id, ticket string
		c                  wire.Confirmation
	}{
		{"ticketing", "job-c-done", "INC0012345", wire.Confirmation{State: wire.StateDone, DeviceName: "LAPTOP-42", LastSyncDateTime: synced, LastUpdated: synced}},
		{"jiraops", "job-c-failed", "ITSM-1", wire.Confirmation{State: wire.StateFailed, DeviceName: "LAPTOP-43", LastSyncDateTime: synced}},
		{"jiraops", "job-c-unknown", "ITSM-2", wire.Confirmation{State: wire.StateUnknown, DeviceName: "LAPTOP-44", Error: "the device did not check in within 24h"}},
	}
	for _, j := range jobs {
		r := sampleResult(j.id, j.ticket)
		r.Source, r.Follow = j.source, true
		h.publish(r)
	}
	ctx := waitCtx(t)
	must(t, snow.WaitNotes(ctx, func(n []servicenowsim.Note) bool { return len(n) >= 1 }), "the result's work note")
	must(t, jira.WaitComments(ctx, func(c []jirasim.Comment) bool { return len(c) >= 2 }), "the results' comments")
	for _, j := range jobs {
		c := j.c
		c.JobID, c.Source, c.Ticket, c.ManagedDeviceID = j.id, j.source, j.ticket, "2d6a3d0e-8f5c-4d7a-9b1e-0b2f3c4d5e6f"
		h.publishConfirmation(c)
	}
	must(t, snow.WaitNotes(ctx, func(n []servicenowsim.Note) bool { return len(n) >= 2 }), "the confirmation's work note")
	must(t, jira.WaitComments(ctx, func(c []jirasim.Comment) bool { return len(c) >= 4 }), "the confirmations' comments")
	h.settled("ticketing", "servicenow")
	h.settled("jiraops", "jira")

	notes := snow.Notes()
	if len(notes) != 2 || !strings.Contains(notes[0].Text, "succeeded") {
		t.Fatalf("work notes %+v; want the result's, then the confirmation's", notes)
	}
	for _, want := range []string{"the device did it", "LAPTOP-42", "last checked in 2026-05-01T10:03:04Z", "Job job-c-done"} {
		if !strings.Contains(notes[1].Text, want) {
			t.Errorf("the confirmation's work note lacks %q:\n%s", want, notes[1].Text)
		}
	}
	byKey := map[string][]jirasim.Comment{}
	for _, c := range jira.Comments() {
		byKey[c.Key] = append(byKey[c.Key], c)
	}
	for key, wants := range map[string][]string{
		"ITSM-1": {"Failed on the device", "LAPTOP-43", "last checked in 2026-05-01T10:03:04Z"},
		"ITSM-2": {"Unknown", "LAPTOP-44", "did not check in within 24h"},
	} {
		cs := byKey[key]
		if len(cs) != 2 || !strings.Contains(cs[0].Text, "succeeded") || !cs[1].Internal {
			t.Errorf("comments on %s: %+v; want the result's, then the confirmation's (internal)", key, cs)
			continue
		}
		for _, want := range wants {
			if !strings.Contains(cs[1].Text, want) {
				t.Errorf("the confirmation's comment on %s lacks %q:\n%s", key, want, cs[1].Text)
			}
		}
	}
	if strings.Contains(jira.Comments()[3].Text, "the device did it") {
		t.Error("a failed or unknown confirmation says the device did it")
	}
}
