package follow

import (
	"testing"
	"time"

	"github.com/recoverpasscode/recoverpasscode/wire"
)

// TestSchedule: the first poll comes First after the call, then the
// interval doubles up to Max; the deadline is For after the call.
func TestSchedule(t *testing.T) {
	s := Schedule{}.withDefaults()
	var got []time.Duration
	for polls := 1; polls <= 6; polls++ {
		got = append(got, s.interval(polls))
	}
	want := []time.Duration{2 * time.Minute, 4 * time.Minute, 8 * time.Minute, 15 * time.Minute, 15 * time.Minute, 15 * time.Minute}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("intervals %v; want %v", got, want)
		}
	}
	called := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	rec := NewRecord(&wire.Result{JobID: "j", CalledAt: called, StartedAt: called.Add(-time.Second)}, Schedule{})
	if !rec.NextPoll.Equal(called.Add(time.Minute)) || !rec.Deadline.Equal(called.Add(24*time.Hour)) {
		t.Errorf("record polls first at %s, gives up at %s", rec.NextPoll, rec.Deadline)
	}
}
