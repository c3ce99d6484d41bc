package gateway

import (
	"net/http"
	"testing"

	"github.com/recoverpasscode/recoverpasscode/graph/graphsim"
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
