package reliability_test

import (
	"strings"
	"testing"

	"github.com/recoverpasscode/recoverpasscode/graph/graphsim"
	"github.com/recoverpasscode/recoverpasscode/reliability"
	"github.com/recoverpasscode/recoverpasscode/wire"
)

// TestCheck proves the checker sees each violation it exists for, and
// none in a clean run, so that a passing fault test means something.
func TestCheck(t *testing.T) {
	const devA, devB = "2d6a3d0e-8f5c-4d7a-9b1e-00000000000a", "2d6a3d0e-8f5c-4d7a-9b1e-00000000000b"
	want := []reliability.Expected{
		{JobID: "a", Device: devA},
		{JobID: "a2", Key: "a", Device: devA},
		{JobID: "b", Device: devB, Status: wire.Rejected, NoGraph: true},
	}
	ok := func(id string) wire.Result { return wire.Result{JobID: id, Status: wire.Succeeded} }
	acted := func(dev string) graphsim.Call {
		return graphsim.Call{Form: graphsim.FormManagedDevice, DeviceID: dev, Status: 204, Performed: true}
	}
	clean := func() reliability.Observed {
		replayed := ok("a2")
		replayed.Replayed = true
		return reliability.Observed{
			Results:     []wire.Result{ok("a"), replayed, {JobID: "b", Status: wire.Rejected}},
			DeadLetters: []wire.DeadLetter{{JobID: "b", Reason: "rejected: id"}},
			Calls:       []graphsim.Call{acted(devA)},
		}
	}
	tests := []struct {
		name    string
		change  func(o *reliability.Observed)
		wantErr string // a word of the violated invariant; "" for none
	}{
		{"clean", func(*reliability.Observed) {}, ""},
		{"lost", func(o *reliability.Observed) { o.Results = o.Results[1:] }, "lost"},
		{"doubled", func(o *reliability.Observed) { o.Results = append(o.Results, ok("a")) }, "doubled"},
		{"wrong status", func(o *reliability.Observed) { o.Results[0].Status = wire.Failed }, "wrong status"},
		{"unexpected result", func(o *reliability.Observed) { o.Results = append(o.Results, ok("z")) }, "never submitted"},
		{"acted twice, not marked", func(o *reliability.Observed) { o.Calls = append(o.Calls, acted(devA)) }, "repeated"},
		{"acted twice, marked", func(o *reliability.Observed) {
			o.Calls = append(o.Calls, acted(devA))
			o.Results[0].Uncertain, o.Results[1].Uncertain = true, true
		}, ""},
		{"acted twice, the key taken over by the second job", func(o *reliability.Observed) {
			o.Calls = append(o.Calls, acted(devA))
			o.Results[1].Uncertain, o.Results[1].Replayed = true, false
		}, ""},
		{"succeeded without Graph", func(o *reliability.Observed) { o.Calls = nil }, "phantom"},
		{"Graph acted on a rejected job", func(o *reliability.Observed) { o.Calls = append(o.Calls, acted(devB)) }, "phantom"},
		{"call on an unknown device", func(o *reliability.Observed) {
			o.Calls = append(o.Calls, graphsim.Call{Form: graphsim.FormManagedDevice, DeviceID: "x", Status: 404})
		}, "stray"},
		{"call outside the path forms", func(o *reliability.Observed) {
			o.Calls = append(o.Calls, graphsim.Call{DeviceID: devA, Path: "/v1.0/x", Status: 404})
		}, "stray"},
		{"dead letter of a success", func(o *reliability.Observed) {
			o.DeadLetters = append(o.DeadLetters, wire.DeadLetter{JobID: "a", Reason: "failed: gave up"})
		}, "dead-letter"},
		{"second dead letter", func(o *reliability.Observed) { o.DeadLetters = append(o.DeadLetters, o.DeadLetters[0]) }, "dead-letter"},
		{"rejection without dead letter", func(o *reliability.Observed) { o.DeadLetters = nil }, "dead-letter"},
		{"job left unacknowledged", func(o *reliability.Observed) { o.JobsLeft, o.AckPending = 1, 1 }, "unacked"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			obs := clean()
			tt.change(&obs)
			err := reliability.Check(want, obs).Err()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("violation reported in a clean run: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("got %v, want a %q violation", err, tt.wantErr)
			}
		})
	}
}

// TestCheckAnyStatus proves a job whose status the contract leaves open
// may end either way, with a dead letter exactly when it failed.
func TestCheckAnyStatus(t *testing.T) {
	const dev = "2d6a3d0e-8f5c-4d7a-9b1e-00000000000c"
	want := []reliability.Expected{{JobID: "c", Device: dev, AnyStatus: true}}
	rejected := reliability.Observed{
		Results:     []wire.Result{{JobID: "c", Status: wire.Rejected}},
		DeadLetters: []wire.DeadLetter{{JobID: "c"}},
	}
	if err := reliability.Check(want, rejected).Err(); err != nil {
		t.Errorf("rejected with a dead letter: %v", err)
	}
	rejected.DeadLetters = nil
	if err := reliability.Check(want, rejected).Err(); err == nil {
		t.Error("rejected without a dead letter passed")
	}
	succeeded := reliability.Observed{
		Results: []wire.Result{{JobID: "c", Status: wire.Succeeded}},
		Calls:   []graphsim.Call{{Form: graphsim.FormManagedDevice, DeviceID: dev, Status: 204, Performed: true}},
	}
	if err := reliability.Check(want, succeeded).Err(); err != nil {
		t.Errorf("succeeded: %v", err)
	}
}
