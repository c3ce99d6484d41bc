package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/recoverpasscode/recoverpasscode/follow"
	"github.com/recoverpasscode/recoverpasscode/graph/graphsim"
	"github.com/recoverpasscode/recoverpasscode/internal/testsystem"
	"github.com/recoverpasscode/recoverpasscode/wire"
)

// TestFollowWait: --follow --wait prints the result and then the device's
// confirmation, as a line or, with --json, one JSON object per line; a
// device named by its serial number is resolved; a confirmation other
// than done exits 2.
func TestFollowWait(t *testing.T) {
	t.Parallel()
	sys := testsystem.Start(t, graphsim.Config{CheckInDelay: 200 * time.Millisecond})
	serialDevice := testsystem.DeviceN(21)
	sys.GS.AddDevice(graphsim.Device{ID: serialDevice, SerialNumber: "C02XL0GRJGH5", DeviceName: "MAC-0042"})
	sys.GS.SetDeviceCheckIn(testsystem.DeviceN(22), 100*time.Millisecond, wire.StateFailed)
	cfg := sys.Config("w1")
	cfg.Follow.Schedule = follow.Schedule{First: 100 * time.Millisecond, Max: 200 * time.Millisecond, For: 5 * time.Second}
	sys.StartWorker(cfg)

	inv := enqueue(t.Context(), t, sys, "--serial", "C02XL0GRJGH5", "--follow", "--wait")
	lines := strings.Split(strings.TrimSpace(inv.stdout), "\n")
	if inv.code != exitOK || len(lines) != 3 || !strings.HasPrefix(lines[0], "succeeded: device "+serialDevice) ||
		!strings.HasPrefix(lines[2], "confirmation: done on device "+serialDevice+" (MAC-0042)") {
		t.Errorf("--serial --follow --wait: %s", inv)
	}

	inv = enqueue(t.Context(), t, sys, "--device", testsystem.DeviceN(22), "--follow", "--wait", "--json")
	lines = strings.Split(strings.TrimSpace(inv.stdout), "\n")
	if inv.code != exitNotSucceeded || len(lines) != 2 {
		t.Fatalf("--follow --wait --json on a failing device: %s", inv)
	}
	var res wire.Result
	var c wire.Confirmation
	if err := json.Unmarshal([]byte(lines[0]), &res); err != nil || res.Status != wire.Succeeded || !res.Follow {
		t.Errorf("first line is not the result: %v: %s", err, lines[0])
	}
	if err := json.Unmarshal([]byte(lines[1]), &c); err != nil || c.State != wire.StateFailed || c.JobID != res.JobID {
		t.Errorf("second line is not the confirmation: %v: %s", err, lines[1])
	}

	inv = enqueue(t.Context(), t, sys, "--device", testsystem.Device, "--serial", "X1")
	if inv.code != exitFailed || !strings.Contains(inv.stderr, "exactly one way") {
		t.Errorf("--device with --serial: %s", inv)
	}
}
