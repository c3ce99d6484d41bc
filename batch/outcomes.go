package batch

import (
	"sort"

	"github.com/recoverpasscode/recoverpasscode/wire"
)

// Outcomes keeps the latest result of each row: a row's later result (a
// re-run answered from the idempotency record, or the replay of its dead
// letter) replaces its earlier one. Results must be added in the order they
// were stored. Outcomes is not safe for concurrent use.
type Outcomes struct {
	latest map[string]wire.Result // by row id
}

// NewOutcomes returns an empty set of outcomes.
func NewOutcomes() *Outcomes {
	return &Outcomes{latest: map[string]wire.Result{}}
}

// Add records a result and reports whether its row had none before.
func (o *Outcomes) Add(r wire.Result) (first bool) {
	id := RowID(r.JobID)
	_, had := o.latest[id]
	o.latest[id] = r
	return !had
}

// Get returns the latest result of a row, by its row id (see RowID).
func (o *Outcomes) Get(rowID string) (wire.Result, bool) {
	r, ok := o.latest[rowID]
	return r, ok
}

// Len is the number of rows with a result.
func (o *Outcomes) Len() int { return len(o.latest) }

// Counts tallies the latest results by status.
func (o *Outcomes) Counts() Counts {
	var c Counts
	for _, r := range o.latest {
		c.add(r)
	}
	return c
}

// Results returns the latest result of every row, ordered by order(row id)
// and then by job id. A nil order sorts by job id alone.
func (o *Outcomes) Results(order func(rowID string) int) []wire.Result {
	out := make([]wire.Result, 0, len(o.latest))
	for _, r := range o.latest {
		out = append(out, r)
	}
	sort.Slice(out, func(i, k int) bool {
		if order != nil {
			a, b := order(RowID(out[i].JobID)), order(RowID(out[k].JobID))
			if a != b {
				return a < b
			}
		}
		return out[i].JobID < out[k].JobID
	})
	return out
}

// Counts are results tallied by status.
type Counts struct {
	Succeeded, Failed, Rejected, Expired int
	// Other counts statuses this version does not know.
	Other int
	// Replayed counts results answered from an earlier job's record;
	// Uncertain those where the action may have run twice.
	Replayed, Uncertain int
}

func (c *Counts) add(r wire.Result) {
	switch r.Status {
	case wire.Succeeded:
		c.Succeeded++
	case wire.Failed:
		c.Failed++
	case wire.Rejected:
		c.Rejected++
	case wire.Expired:
		c.Expired++
	default:
		c.Other++
	}
	if r.Replayed {
		c.Replayed++
	}
	if r.Uncertain {
		c.Uncertain++
	}
}

// Done is the number of results counted.
func (c Counts) Done() int { return c.Succeeded + c.Failed + c.Rejected + c.Expired + c.Other }

// NotSucceeded is the number of results that are not a success.
func (c Counts) NotSucceeded() int { return c.Done() - c.Succeeded }
