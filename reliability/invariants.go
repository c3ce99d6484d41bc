package reliability

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/recoverpasscode/recoverpasscode/graph/graphsim"
	"github.com/recoverpasscode/recoverpasscode/wire"
)

// Expected is one accepted job and how it must end.
type Expected struct {
	// JobID is the job's id, as its result carries it.
	JobID string
	// Key is the job's idempotency key. Defaults to JobID.
	Key string
	// Device is the managed device the job names. Graph's call log knows
	// devices, not keys, so jobs with different keys must name different
	// devices; jobs that share a key share its device.
	Device string
	// Status is the status the job's result must have. Defaults to
	// wire.Succeeded. A job expected to end rejected or failed (a permanent
	// failure) must have exactly one dead letter; no other job may have one.
	Status wire.Status
	// AnyStatus accepts a result of any status, where the contract leaves
	// the choice open: the job must still end exactly once, and have a dead
	// letter if and only if it ended rejected or failed.
	AnyStatus bool
	// NoGraph says Graph must not act on Device at all (a rejected job, or
	// one whose device Graph does not know).
	NoGraph bool
}

func (e Expected) key() string {
	if e.Key == "" {
		return e.JobID
	}
	return e.Key
}

func (e Expected) status() wire.Status {
	if e.Status == "" {
		return wire.Succeeded
	}
	return e.Status
}

// permanent reports whether the job must end in the dead-letter queue,
// given its stored results.
func (e Expected) permanent(results []wire.Result) bool {
	st := e.status()
	if e.AnyStatus {
		if len(results) == 0 {
			return false
		}
		st = results[0].Status
	}
	return st == wire.Rejected || st == wire.Failed
}

// Observed is what a settled system holds, as Collect reads it.
type Observed struct {
	// Results is every message of the results stream, duplicates included.
	Results []wire.Result
	// DeadLetters is every message of the dead-letter stream.
	DeadLetters []wire.DeadLetter
	// Calls is Graph's call log.
	Calls []graphsim.Call
	// JobsLeft is the number of messages in the jobs stream. Its retention
	// is work-queue: a job leaves it when it is acknowledged or terminated.
	JobsLeft uint64
	// AckPending is the number of jobs delivered and not yet acknowledged.
	AckPending int
	// Pending is the number of jobs not yet delivered.
	Pending uint64
}

// Report is the verdict of Check: the figures of a run and every violated
// invariant, each with the jobs, keys or calls that violate it. The zero
// value of a violation field means the invariant holds.
type Report struct {
	// Jobs counts the expected jobs; Results, DeadLetters and GraphCalls
	// count what was observed.
	Jobs, Results, DeadLetters, GraphCalls int
	// Performed counts Graph calls on which the action ran.
	Performed int
	// Uncertain counts results marked uncertain; Replayed counts results
	// answered from an earlier job's record.
	Uncertain, Replayed int

	// Lost lists jobs without a stored result.
	Lost []string
	// Doubled lists jobs with more than one stored result.
	Doubled []string
	// WrongStatus lists jobs whose result has another status than expected.
	WrongStatus []string
	// Unexpected lists results for jobs that were not expected.
	Unexpected []string
	// Repeated lists keys on which Graph acted more than once although no
	// result of the key is marked uncertain. (The job whose call came first
	// may not know of the second, made by a job that took its key over; the
	// second job's result says so.)
	Repeated []string
	// Phantom lists keys that succeeded although Graph never acted on their
	// device, and keys on which Graph acted although it must not have.
	Phantom []string
	// Stray lists Graph calls that match no expected device or whose path
	// matched none of the recoverPasscode forms.
	Stray []string
	// BadDeadLetters lists dead letters of jobs that must not have one,
	// second dead letters of a job, and permanent failures without one.
	BadDeadLetters []string
	// Unacked describes jobs left in the jobs stream or awaiting an
	// acknowledgement; empty when there are none.
	Unacked string
}

// Err returns nil when every invariant holds, else an error naming each
// violated invariant and the jobs that violate it.
func (r Report) Err() error {
	var errs []error
	add := func(what string, ids []string) {
		if len(ids) == 0 {
			return
		}
		shown := ids
		if len(shown) > 40 {
			shown = shown[:40]
		}
		more := ""
		if len(ids) > len(shown) {
			more = fmt.Sprintf(" … and %d more", len(ids)-len(shown))
		}
		errs = append(errs, fmt.Errorf("%s (%d): %s%s", what, len(ids), strings.Join(shown, "; "), more))
	}
	add("lost: jobs without a stored result", r.Lost)
	add("doubled: jobs with more than one stored result", r.Doubled)
	add("wrong status", r.WrongStatus)
	add("results for jobs never submitted", r.Unexpected)
	add("repeated: Graph acted more than once on a key and no result says so", r.Repeated)
	add("phantom: success without Graph acting, or Graph acting where it must not", r.Phantom)
	add("stray Graph calls", r.Stray)
	add("dead-letter queue holds more or less than the permanent failures", r.BadDeadLetters)
	if r.Unacked != "" {
		errs = append(errs, errors.New("unacked: "+r.Unacked))
	}
	return errors.Join(errs...)
}

// String gives the run's figures on one line.
func (r Report) String() string {
	return fmt.Sprintf("jobs=%d results=%d lost=%d doubled=%d uncertain=%d replayed=%d dead_letters=%d graph_calls=%d performed=%d",
		r.Jobs, r.Results, len(r.Lost), len(r.Doubled), r.Uncertain, r.Replayed, r.DeadLetters, r.GraphCalls, r.Performed)
}

// Check judges a settled run against the promises:
//   - every expected job has exactly one stored result, with the expected
//     status, and no result belongs to a job that was not expected;
//   - Graph acted at most once per key, unless a result of the key is
//     marked uncertain; a key that succeeded was acted on; Graph never acted
//     on a device it must not have, nor outside the three path forms;
//   - the dead-letter queue holds exactly one entry per job that was
//     rejected or failed permanently, and nothing else;
//   - nothing is left in the jobs stream or awaiting an acknowledgement.
//
// Jobs with different keys must name different devices (see Expected).
func Check(expected []Expected, obs Observed) Report {
	r := Report{Jobs: len(expected), Results: len(obs.Results), DeadLetters: len(obs.DeadLetters), GraphCalls: len(obs.Calls)}
	results := make(map[string][]wire.Result)
	for _, res := range obs.Results {
		results[res.JobID] = append(results[res.JobID], res)
		if res.Uncertain {
			r.Uncertain++
		}
		if res.Replayed {
			r.Replayed++
		}
	}
	byID := make(map[string]Expected, len(expected))
	for _, e := range expected {
		byID[e.JobID] = e
	}
	r.checkResults(expected, byID, results)
	r.checkGraph(expected, results, obs.Calls)
	r.checkDeadLetters(expected, byID, results, obs.DeadLetters)
	if obs.JobsLeft != 0 || obs.AckPending != 0 || obs.Pending != 0 {
		r.Unacked = fmt.Sprintf("%d jobs left in the jobs stream, %d awaiting an acknowledgement, %d not yet delivered", obs.JobsLeft, obs.AckPending, obs.Pending)
	}
	return r
}

func (r *Report) checkResults(expected []Expected, byID map[string]Expected, results map[string][]wire.Result) {
	for _, e := range expected {
		rs := results[e.JobID]
		switch {
		case len(rs) == 0:
			r.Lost = append(r.Lost, e.JobID)
			continue
		case len(rs) > 1:
			r.Doubled = append(r.Doubled, fmt.Sprintf("%s ×%d (workers %s)", e.JobID, len(rs), workers(rs)))
		}
		if got := rs[0].Status; got != e.status() && !e.AnyStatus {
			r.WrongStatus = append(r.WrongStatus, fmt.Sprintf("%s: %s, want %s (%s)", e.JobID, got, e.status(), rs[0].Error))
		}
	}
	for id, rs := range results {
		if _, ok := byID[id]; !ok {
			r.Unexpected = append(r.Unexpected, fmt.Sprintf("%s: %s (%s)", id, rs[0].Status, rs[0].Error))
		}
	}
	slices.Sort(r.Unexpected)
}

func workers(rs []wire.Result) string {
	var names []string
	for _, res := range rs {
		names = append(names, res.Worker)
	}
	return strings.Join(names, ",")
}

func (r *Report) checkGraph(expected []Expected, results map[string][]wire.Result, calls []graphsim.Call) {
	performed := make(map[string]int)
	known := make(map[string]bool)
	for _, e := range expected {
		known[strings.ToLower(e.Device)] = true
	}
	for i, c := range calls {
		dev := strings.ToLower(c.DeviceID)
		if c.Performed {
			r.Performed++
			performed[dev]++
		}
		if c.Form == "" || !known[dev] {
			r.Stray = append(r.Stray, fmt.Sprintf("call %d: %s %s (status %d)", i, c.Method, c.Path, c.Status))
		}
	}
	type keyState struct {
		device  string
		noGraph bool
		jobs    []string
	}
	keys := make(map[string]*keyState)
	var order []string
	for _, e := range expected {
		k := keys[e.key()]
		if k == nil {
			k = &keyState{device: strings.ToLower(e.Device)}
			keys[e.key()] = k
			order = append(order, e.key())
		}
		k.noGraph = k.noGraph || e.NoGraph
		k.jobs = append(k.jobs, e.JobID)
	}
	for _, key := range order {
		k := keys[key]
		n := performed[k.device]
		var ids []string
		succeeded, disclosed := false, false
		for _, id := range k.jobs {
			for _, res := range results[id] {
				ids = append(ids, id)
				disclosed = disclosed || res.Uncertain
				succeeded = succeeded || res.Status == wire.Succeeded
			}
		}
		switch {
		case k.noGraph && n > 0:
			r.Phantom = append(r.Phantom, fmt.Sprintf("key %s: Graph acted %d times on device %s, which no job may reach", key, n, k.device))
		case succeeded && n == 0:
			r.Phantom = append(r.Phantom, fmt.Sprintf("key %s: succeeded but Graph never acted on device %s", key, k.device))
		case n > 1 && !disclosed:
			r.Repeated = append(r.Repeated, fmt.Sprintf("key %s: Graph acted %d times on device %s; no result marked uncertain (jobs %s)", key, n, k.device, strings.Join(ids, ",")))
		}
	}
}

func (r *Report) checkDeadLetters(expected []Expected, byID map[string]Expected, results map[string][]wire.Result, dls []wire.DeadLetter) {
	count := make(map[string]int)
	for _, d := range dls {
		count[d.JobID]++
		e, ok := byID[d.JobID]
		switch {
		case !ok:
			r.BadDeadLetters = append(r.BadDeadLetters, fmt.Sprintf("%s: not an expected job (%s)", d.JobID, d.Reason))
		case !e.permanent(results[d.JobID]):
			r.BadDeadLetters = append(r.BadDeadLetters, fmt.Sprintf("%s: not a permanent failure, dead-lettered (%s)", d.JobID, d.Reason))
		case count[d.JobID] == 2:
			r.BadDeadLetters = append(r.BadDeadLetters, d.JobID+": more than one dead letter")
		}
	}
	for _, e := range expected {
		if e.permanent(results[e.JobID]) && count[e.JobID] == 0 {
			r.BadDeadLetters = append(r.BadDeadLetters, e.JobID+": a permanent failure without a dead letter")
		}
	}
}
