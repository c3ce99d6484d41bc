package gateway

import (
	"net/http"
	"testing"
	"time"

	"github.com/recoverpasscode/recoverpasscode/follow"
	"github.com/recoverpasscode/recoverpasscode/graph/graphsim"
	"github.com/recoverpasscode/recoverpasscode/internal/testsystem"
)

// TestSubmitByEntraDeviceID: automation posts the device it knows by its
// Entra ID device id (or serial number), followed; the result names the
// device it resolved to and says a confirmation follows. A value that
// could change the worker's Graph filter, and a job naming its device two
// ways, are 400 and nothing is published.
func TestSubmitByEntraDeviceID(t *testing.T) {
	h := newHarness(t)
	const entra = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"
	h.sys.GS.AddDevice(graphsim.Device{ID: device(31), AzureADDeviceID: entra, SerialNumber: "SN-31"})
	h.startWorker("w1")
	r := h.post("ticketing", `{"azureADDeviceId":"`+entra+`","follow":true}`, "Prefer", "wait=20")
	if r.status != http.StatusOK {
		t.Fatalf("answer %d %s, want 200 with the result", r.status, r.body)
	}
	conforms(t, "Result", r.body)
	res := r.json(t)
	if res["status"] != "succeeded" || res["managedDeviceId"] != device(31) || res["azureADDeviceId"] != entra || res["follow"] != true {
		t.Fatalf("result %v", res)
	}
	before := h.jobsStored()
	for _, body := range []string{
		`{"serialNumber":"x' or serialNumber ne '"}`,
		`{"serialNumber":"SN-31","managedDeviceId":"` + device(31) + `"}`,
		`{"azureADDeviceId":"not-a-guid"}`,
	} {
		r := h.post("ticketing", body)
		r.problem(t, http.StatusBadRequest, ProblemInvalidJob)
	}
	if n := h.jobsStored(); n != before {
		t.Errorf("%d invalid jobs were published", n-before)
	}
}

// TestGetJobShowsTheConfirmation: GET /v1/jobs/{id} of a followed job
// shows no confirmation while its device is followed, and the job's
// confirmation, as openapi.json describes it, once the device has
// reported the action done; another source does not see the job.
func TestGetJobShowsTheConfirmation(t *testing.T) {
	h := newHarness(t)
	const deviceName = "LAPTOP-GW-41"
	h.sys.GS.AddDevice(graphsim.Device{ID: device(41), DeviceName: deviceName})
	h.sys.GS.SetDeviceCheckIn(device(42), 0, "") // never checks in
	cfg := h.sys.Config("w1")
	cfg.Follow.Schedule = follow.Schedule{First: 100 * time.Millisecond, Max: 200 * time.Millisecond, For: time.Minute}
	h.sys.StartWorker(cfg)

	done := h.post("ticketing", `{"managedDeviceId":"`+device(41)+`","follow":true}`, "Prefer", "wait=20")
	pending := h.post("ticketing", `{"managedDeviceId":"`+device(42)+`","follow":true}`, "Prefer", "wait=20")
	if done.status != http.StatusOK || pending.status != http.StatusOK {
		t.Fatalf("answers %d %s, %d %s; want 200 with the results", done.status, done.body, pending.status, pending.body)
	}
	doneID, pendingID := done.json(t)["jobId"].(string), pending.json(t)["jobId"].(string)

	var got reply
	if !testsystem.Eventually(20*time.Second, func() bool {
		got = h.get("ticketing", jobPath(doneID))
		return got.status == http.StatusOK && got.json(t)["confirmation"] != nil
	}) {
		t.Fatalf("no confirmation within 20s: %d %s", got.status, got.body)
	}
	conforms(t, "JobState", got.body)
	conforms(t, "Result", got.body)
	job := got.json(t)
	c, _ := job["confirmation"].(map[string]any)
	if job["status"] != "succeeded" || job["jobId"] != doneID || c["state"] != "done" || c["jobId"] != doneID ||
		c["managedDeviceId"] != device(41) || c["deviceName"] != deviceName || c["source"] != "ticketing" {
		t.Errorf("job %v", job)
	}

	// The other job is followed until its device checks in, which it
	// never does: no confirmation yet.
	p := h.get("ticketing", jobPath(pendingID))
	conforms(t, "JobState", p.body)
	if j := p.json(t); p.status != http.StatusOK || j["follow"] != true || j["confirmation"] != nil {
		t.Errorf("the job still followed: %d %s", p.status, p.body)
	}
	h.get("other", jobPath(doneID)).problem(t, http.StatusNotFound, ProblemNotFound)
}
