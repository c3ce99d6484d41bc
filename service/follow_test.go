package service_test

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/recoverpasscode/recoverpasscode/follow"
	"github.com/recoverpasscode/recoverpasscode/graph/graphsim"
	"github.com/recoverpasscode/recoverpasscode/internal/testsystem"
	"github.com/recoverpasscode/recoverpasscode/wire"
)

// confirmations reads n stored confirmations, keyed by job id; a second
// one for a job fails the test.
func confirmations(t *testing.T, sys *testsystem.System, n int, timeout time.Duration) map[string]wire.Confirmation {
	t.Helper()
	return testsystem.ReadStream(t, sys.JS, sys.Names.ConfirmationsStream(), sys.Names.ConfirmationsWildcard(), n, timeout, func(data []byte) (string, wire.Confirmation) {
		var c wire.Confirmation
		if err := json.Unmarshal(data, &c); err != nil {
			t.Fatalf("confirmation is not JSON: %v: %s", err, data)
		}
		return c.JobID, c
	})
}

// A followed job ends with its result and then one confirmation of what
// the device did: done, failed, or unknown when the device never checks in
// before the deadline; a job not followed, and one that failed, get none.
// Following makes no POST.
func TestFollowedJobsAreConfirmedOnceWithTheDevicesState(t *testing.T) {
	t.Parallel()
	sys := testsystem.Start(t, graphsim.Config{CheckInDelay: 300 * time.Millisecond})
	failing, silent, missing := testsystem.DeviceN(11), testsystem.DeviceN(12), testsystem.DeviceN(13)
	sys.GS.SetDeviceCheckIn(failing, 200*time.Millisecond, "failed")
	sys.GS.SetDeviceCheckIn(silent, 0, "")
	sys.GS.SetDeviceMissing(missing)
	cfg := sys.Config("w1")
	cfg.Follow.Schedule = follow.Schedule{First: 100 * time.Millisecond, Max: 400 * time.Millisecond, For: 3 * time.Second}
	cfg.Follow.Sources = []string{"automation"}
	sys.StartWorker(cfg)

	sys.Submit("ticketing", wire.Job{ID: "done", ManagedDeviceID: testsystem.DeviceN(10), Follow: true, Ticket: "INC9"})
	sys.Submit("ticketing", wire.Job{ID: "failing", ManagedDeviceID: failing, Follow: true})
	sys.Submit("ticketing", wire.Job{ID: "silent", ManagedDeviceID: silent, Follow: true})
	sys.Submit("ticketing", wire.Job{ID: "not-followed", ManagedDeviceID: testsystem.DeviceN(14)})
	sys.Submit("ticketing", wire.Job{ID: "missing", ManagedDeviceID: missing, Follow: true})
	sys.Submit("automation", wire.Job{ID: "by-source", ManagedDeviceID: testsystem.DeviceN(15)})
	results := sys.Results("", 6, 20*time.Second)
	for id, r := range results {
		want := id != "not-followed" && id != "missing"
		if r.Follow != want {
			t.Errorf("%s: follow %t; want %t (%+v)", id, r.Follow, want, r)
		}
	}
	got := confirmations(t, sys, 4, 20*time.Second)
	for id, want := range map[string]string{"done": wire.StateDone, "failing": wire.StateFailed, "silent": wire.StateUnknown, "by-source": wire.StateDone} {
		c, ok := got[id]
		if !ok || c.State != want {
			t.Errorf("%s: confirmation %+v; want state %s", id, c, want)
			continue
		}
		if c.Polls < 1 || c.DeviceName == "" || c.CalledAt.IsZero() || c.ConfirmedAt.Before(c.CalledAt) {
			t.Errorf("%s: confirmation lacks what was read: %+v", id, c)
		}
		if want != wire.StateUnknown && (c.LastUpdated.Before(c.CalledAt) || c.LastSyncDateTime.IsZero()) {
			t.Errorf("%s: lastUpdated %s before the call %s, or no last sync", id, c.LastUpdated, c.CalledAt)
		}
	}
	if c := got["done"]; c.Ticket != "INC9" || c.Source != "ticketing" {
		t.Errorf("the confirmation does not carry the job's ticket and source: %+v", c)
	}
	if c := got["silent"]; c.Error == "" || c.Polls < 3 {
		t.Errorf("unknown confirmation: %+v; want a reason and several polls", c)
	}
	posts := 0
	for _, c := range sys.GS.Calls() {
		if c.Method == http.MethodPost {
			posts++
		}
	}
	if posts != 6 {
		t.Errorf("graph saw %d POSTs; want one per job", posts)
	}
	sys.AssertFollowsDone()
}
