package service_test

import (
	"strings"
	"testing"
	"time"

	"github.com/recoverpasscode/recoverpasscode/graph/graphsim"
	"github.com/recoverpasscode/recoverpasscode/internal/testsystem"
	"github.com/recoverpasscode/recoverpasscode/wire"
)

func TestEachPathFormSucceeds(t *testing.T) {
	t.Parallel()
	sys := testsystem.Start(t, graphsim.Config{})
	sys.StartWorker(sys.Config("w1"))
	jobs := []wire.Job{
		{ID: "form-device", ManagedDeviceID: testsystem.Device, Ticket: "INC1", RequestedBy: "agent@contoso.com"},
		{ID: "form-user-guid", ManagedDeviceID: testsystem.Device, UserID: "6f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0"},
		{ID: "form-user-upn", ManagedDeviceID: testsystem.Device, UserID: "pat.doe@contoso.com"},
		{ID: "form-app", ManagedDeviceID: testsystem.Device, DetectedAppID: "0000a1b2c3d4e5f6"},
		{ID: "form-other-tenant", ManagedDeviceID: testsystem.Device, TenantID: testsystem.OtherTenant},
	}
	for _, j := range jobs {
		sys.Submit("ticketing", j)
	}
	results := sys.Results("", len(jobs), 20*time.Second)
	for _, j := range jobs {
		r := results[j.ID]
		if r.Status != wire.Succeeded || r.Graph == nil || r.Graph.Status != 204 || r.Attempts != 1 {
			t.Errorf("%s: %+v (graph %+v)", j.ID, r, r.Graph)
			continue
		}
		if r.Graph.RequestID == "" || r.Graph.ClientRequestID == "" || r.Source != "ticketing" || r.Worker != "w1" {
			t.Errorf("%s: result lacks ids or provenance: %+v", j.ID, r)
		}
	}
	if r := results["form-device"]; r.Ticket != "INC1" || r.RequestedBy != "agent@contoso.com" {
		t.Errorf("ticket and requester not carried: %+v", r)
	}
	forms := map[string]int{}
	tenants := map[string]int{}
	for _, c := range sys.GS.Calls() {
		forms[c.Form]++
		tenants[c.TenantID]++
	}
	if forms["managedDevice"] != 2 || forms["user"] != 2 || forms["detectedApp"] != 1 {
		t.Errorf("graph saw forms %v", forms)
	}
	if tenants[testsystem.OtherTenant] != 1 {
		t.Errorf("the other tenant's job did not use a token of that tenant: %v", tenants)
	}
}

func TestInvalidJobsAreRejectedWithoutCallingGraph(t *testing.T) {
	t.Parallel()
	sys := testsystem.Start(t, graphsim.Config{})
	sys.StartWorker(sys.Config("w1"))
	cases := []struct {
		id, data, want string
	}{
		{"bad-json", `{"managedDeviceId":`, "not valid JSON"},
		{"unknown-field", `{"managedDeviceId":"` + testsystem.Device + `","colour":"red"}`, "unknown field"},
		{"non-guid-device", `{"managedDeviceId":"12345"}`, "managedDeviceId"},
		{"user-path-trick", `{"managedDeviceId":"` + testsystem.Device + `","userId":"a/../b"}`, "userId"},
		{"user-query-trick", `{"managedDeviceId":"` + testsystem.Device + `","userId":"x?y"}`, "userId"},
		{"user-and-app", `{"managedDeviceId":"` + testsystem.Device + `","userId":"pat@contoso.com","detectedAppId":"app"}`, "detectedAppId"},
		{"tenant-not-allowed", `{"managedDeviceId":"` + testsystem.Device + `","tenantId":"99999999-9999-4999-8999-999999999999"}`, "RECOVER_TENANTS"},
		{"oversize", `{"managedDeviceId":"` + testsystem.Device + `","ticket":"` + strings.Repeat("x", wire.MaxSize) + `"}`, "more than the"},
	}
	for _, c := range cases {
		sys.Publish("ticketing", c.id, []byte(c.data))
	}
	results := sys.Results("", len(cases), 20*time.Second)
	dead := sys.DeadLetters(len(cases), 10*time.Second)
	for _, c := range cases {
		r, ok := results[c.id]
		if !ok {
			t.Errorf("%s: no result (have %v)", c.id, testsystem.Keys(results))
			continue
		}
		if r.Status != wire.Rejected || !strings.Contains(r.Error, c.want) {
			t.Errorf("%s: status %s, error %q; want rejected mentioning %q", c.id, r.Status, r.Error, c.want)
		}
		if d, ok := dead[c.id]; !ok || !strings.Contains(d.Reason, "rejected") {
			t.Errorf("%s: dead letter %+v", c.id, d)
		}
	}
	if n := len(sys.GS.Calls()); n != 0 {
		t.Errorf("graph was called %d times for invalid jobs", n)
	}
	sys.AssertJobsStreamEmpty()
}

func TestGraphNotFoundFailsWithGraphsCode(t *testing.T) {
	t.Parallel()
	sys := testsystem.Start(t, graphsim.Config{})
	missing := "0e0e0e0e-0e0e-4e0e-8e0e-0e0e0e0e0e0e"
	sys.GS.SetDeviceMissing(missing)
	sys.StartWorker(sys.Config("w1"))
	sys.Submit("ticketing", wire.Job{ID: "missing", ManagedDeviceID: missing})
	r := sys.Results("", 1, 20*time.Second)["missing"]
	if r.Status != wire.Failed || r.Graph == nil || r.Graph.Status != 404 || r.Graph.ErrorCode == "" || r.Graph.RequestID == "" {
		t.Fatalf("result %+v graph %+v", r, r.Graph)
	}
	if r.Attempts != 1 {
		t.Errorf("a 404 was retried: %d attempts", r.Attempts)
	}
	if d := sys.DeadLetters(1, 5*time.Second); len(d) != 1 {
		t.Errorf("no dead letter for the failure")
	}
}

func TestExpiredJobIsNotSentToGraph(t *testing.T) {
	t.Parallel()
	sys := testsystem.Start(t, graphsim.Config{})
	sys.StartWorker(sys.Config("w1"))
	past := time.Now().Add(-time.Minute)
	sys.Submit("batch", wire.Job{ID: "late", ManagedDeviceID: testsystem.Device, NotAfter: &past})
	r := sys.Results("", 1, 20*time.Second)["late"]
	if r.Status != wire.Expired || r.Attempts != 0 {
		t.Fatalf("result %+v", r)
	}
	if n := len(sys.GS.Calls()); n != 0 {
		t.Fatalf("graph called %d times", n)
	}
}

func TestBareJobFromAnyClientGetsAResultOnTheDefaultSubject(t *testing.T) {
	t.Parallel()
	sys := testsystem.Start(t, graphsim.Config{})
	sys.StartWorker(sys.Config("w1"))
	// As `nats pub` sends it: no id, no header.
	sys.Publish("ticketing", "", []byte(`{"managedDeviceId":"`+testsystem.Device+`"}`))
	results := sys.Results("recoverpasscode.results.ticketing.*", 1, 20*time.Second)
	for id, r := range results {
		if r.Status != wire.Succeeded || id == "" || r.IdempotencyKey != id {
			t.Fatalf("result %+v", r)
		}
	}
}

func TestReplyToInboxAlsoStoresTheResult(t *testing.T) {
	t.Parallel()
	sys := testsystem.Start(t, graphsim.Config{})
	sys.StartWorker(sys.Config("w1"))
	inbox := sys.NC.NewRespInbox()
	sub, err := sys.NC.SubscribeSync(inbox)
	if err != nil {
		t.Fatal(err)
	}
	sys.Submit("automation", wire.Job{ID: "inbox-job", ManagedDeviceID: testsystem.Device, ReplyTo: inbox})
	msg, err := sub.NextMsg(20 * time.Second)
	if err != nil {
		t.Fatalf("no reply on the inbox: %v", err)
	}
	if !strings.Contains(string(msg.Data), `"status":"succeeded"`) {
		t.Fatalf("reply %s", msg.Data)
	}
	if r := sys.Results("", 1, 5*time.Second)["inbox-job"]; r.Status != wire.Succeeded {
		t.Fatalf("stored result %+v", r)
	}
}
