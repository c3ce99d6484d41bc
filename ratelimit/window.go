package ratelimit

import (
	"encoding/json"
	"fmt"
	"slices"
	"time"
)

// windowLog is the value at a window key: the permits granted for one
// (app, tenant) whose latest use may still fall inside the window. It is
// JSON so that a person can read it with `nats kv get`.
type windowLog struct {
	// Rate is the writer's Rate, for people and for noticing a fleet whose
	// members disagree.
	Rate string `json:"rate"`
	// Owner is the Config.Owner of the last writer.
	Owner string `json:"owner"`
	// At is when the last writer wrote the value, by its clock.
	At time.Time `json:"at"`
	// Grants are the live grants, oldest first.
	Grants []grant `json:"grants"`
	// Pace is the fleet's pacing state for the tenant, the theoretical
	// arrival time of the next permit in Unix milliseconds (see pace);
	// absent while pacing has never held a grant back.
	Pace int64 `json:"pace,omitempty"`
	// Since is when the current run of grants began, in Unix
	// milliseconds: the first grant written to a log with no live grants
	// left. A tenant that has learned nothing yet starts slowly from it
	// (see coldInterval).
	Since int64 `json:"since,omitempty"`
}

// grant is N permits that may each start a call no later than Until, in
// Unix milliseconds rounded up. Rounding up only ever keeps a permit in the
// window longer. It is written as the pair [Until, N] to keep the value
// small: 200 permits in batches of 10 take about 400 bytes.
type grant struct {
	Until int64
	N     int
}

// MarshalJSON writes g as [until, n].
func (g grant) MarshalJSON() ([]byte, error) {
	return json.Marshal([2]int64{g.Until, int64(g.N)})
}

// UnmarshalJSON reads g from [until, n].
func (g *grant) UnmarshalJSON(b []byte) error {
	var pair [2]int64
	if err := json.Unmarshal(b, &pair); err != nil {
		return err
	}
	if pair[1] < 0 {
		return fmt.Errorf("negative permit count %d", pair[1])
	}
	g.Until, g.N = pair[0], int(pair[1])
	return nil
}

// untilMillis is t in Unix milliseconds, rounded up.
func untilMillis(t time.Time) int64 {
	ms := t.UnixMilli()
	if time.UnixMilli(ms).Before(t) {
		ms++
	}
	return ms
}

// decodeWindow reads a stored window log.
func decodeWindow(b []byte) (windowLog, error) {
	var w windowLog
	if err := json.Unmarshal(b, &w); err != nil {
		return windowLog{}, fmt.Errorf("decode window log: %w", err)
	}
	return w, nil
}

// live returns the grants whose permits may still start a call inside a
// window of length window ending at now, sorted oldest first. A permit
// that had to be used by Until can no longer share a window with a call
// starting at now once Until+window <= now.
func live(grants []grant, now time.Time, window time.Duration) []grant {
	horizon := now.Add(-window).UnixMilli()
	kept := make([]grant, 0, len(grants)+1)
	for _, g := range grants {
		if g.Until > horizon && g.N > 0 {
			kept = append(kept, g)
		}
	}
	slices.SortStableFunc(kept, func(a, b grant) int {
		switch {
		case a.Until < b.Until:
			return -1
		case a.Until > b.Until:
			return 1
		}
		return 0
	})
	return kept
}

// permits counts the permits in grants.
func permits(grants []grant) int {
	total := 0
	for _, g := range grants {
		total += g.N
	}
	return total
}

// freeAt is the earliest time at which one more permit fits under a limit
// of n per window, given live grants sorted oldest first that fill it.
func freeAt(grants []grant, n int, window time.Duration) time.Time {
	excess := permits(grants) - (n - 1)
	for _, g := range grants {
		excess -= g.N
		if excess <= 0 {
			return time.UnixMilli(g.Until).Add(window)
		}
	}
	return time.Time{}
}
