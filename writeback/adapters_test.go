package writeback_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/recoverpasscode/recoverpasscode/wire"
	"github.com/recoverpasscode/recoverpasscode/writeback"
	"github.com/recoverpasscode/recoverpasscode/writeback/receiver"
)

// sampleResult is a succeeded result for a ticket.
func sampleResult(jobID, ticket string) wire.Result {
	now := time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)
	return wire.Result{
		JobID: jobID, IdempotencyKey: ticket + "/dev", Source: "ticketing", TenantID: "33333333-3333-4333-8333-333333333333",
		ManagedDeviceID: "2d6a3d0e-8f5c-4d7a-9b1e-0b2f3c4d5e6f", RequestedBy: "helpdesk-agent@contoso.com", Ticket: ticket,
		Status: wire.Succeeded, Attempts: 1,
		Graph:    &wire.GraphOutcome{Status: 204, RequestID: "9edd0000-0000-4000-8000-000000000001", ClientRequestID: "c1d00000-0000-4000-8000-000000000002"},
		QueuedAt: now, StartedAt: now.Add(time.Second), FinishedAt: now.Add(2 * time.Second), Worker: "w1",
	}
}

func TestNoteSaysWhatHappened(t *testing.T) {
	text := strings.Join(writeback.Note(sampleResult("job-1", "INC0012345")), "\n")
	for _, want := range []string{
		"succeeded for device 2d6a3d0e-8f5c-4d7a-9b1e-0b2f3c4d5e6f",
		"Requested by helpdesk-agent@contoso.com",
		"finished 2026-05-01T10:00:02Z",
		"HTTP 204, request-id 9edd0000-0000-4000-8000-000000000001",
		"Job job-1",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("note lacks %q:\n%s", want, text)
		}
	}
	failed := sampleResult("job-2", "INC1")
	failed.Status, failed.Error = wire.Failed, "Graph answered 404 ResourceNotFound"
	failed.Graph.Status, failed.Graph.ErrorCode = 404, "ResourceNotFound"
	text = strings.Join(writeback.Note(failed), "\n")
	if !strings.Contains(text, "failed for device") || !strings.Contains(text, "HTTP 404 ResourceNotFound") {
		t.Errorf("failure note:\n%s", text)
	}
}

func TestReceiverVerifies(t *testing.T) {
	secret, _ := writeback.NewSecret()
	rcv, err := receiver.New(receiver.Config{Secrets: []string{secret}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(rcv)
	defer srv.Close()
	body, _ := json.Marshal(sampleResult("job-1", "INC1"))
	s, _ := writeback.ParseSecret(secret)
	other, _ := writeback.NewSecret()
	o, _ := writeback.ParseSecret(other)
	post := func(sig string) int {
		req, _ := http.NewRequest(http.MethodPost, srv.URL, strings.NewReader(string(body)))
		req.Header.Set(writeback.HeaderID, "job-1/result")
		req.Header.Set(writeback.HeaderTimestamp, strconv.FormatInt(time.Now().Unix(), 10))
		req.Header.Set(writeback.HeaderSignature, sig)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	now := time.Now()
	if code := post(writeback.Sign("job-1/result", now, body, s)); code != http.StatusNoContent {
		t.Errorf("a good delivery: %d", code)
	}
	if code := post(writeback.Sign("job-1/result", now, body, o)); code != http.StatusUnauthorized {
		t.Errorf("a delivery signed with another secret: %d", code)
	}
	if got := rcv.Deliveries(); len(got) != 1 || got[0].Result.JobID != "job-1" || rcv.Refused() != 1 {
		t.Errorf("deliveries %v, refused %d", got, rcv.Refused())
	}
}
