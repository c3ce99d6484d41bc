package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/recoverpasscode/recoverpasscode/queue"
	"github.com/recoverpasscode/recoverpasscode/wire"
)

// TestPullsOnlyForFreeSlots: the worker never holds more jobs than
// Concurrency, handed to the handler or fetched and waiting: each slot
// that frees up is filled by a pull for one job.
func TestPullsOnlyForFreeSlots(t *testing.T) {
	r := newRig(t)
	const conc, total = 4, 20
	var specs []spec
	for i := range total {
		specs = append(specs, spec{ID: fmt.Sprintf("slot-%02d", i), Do: "ack", Block: true})
	}
	r.publish(t, "test", specs...)
	h, obs := newFakeHandler(), &fakeObserver{}
	r.start(t, h, obs, Config{Concurrency: conc})

	eventually(t, 5*time.Second, "the slots to fill", func() bool {
		n, _, _ := h.snapshot()
		return n == conc
	})
	if n := r.ackPending(t); n != conc {
		t.Fatalf("%d jobs delivered and not acknowledged with all %d slots busy, want %d", n, conc, conc)
	}
	for round := 1; round <= 3; round++ {
		h.release <- struct{}{} // one job finishes: one slot frees
		eventually(t, 5*time.Second, "a job to finish and another to take its slot", func() bool {
			_, _, started := h.snapshot()
			return obs.count() == round && len(started) >= conc+round
		})
		if _, _, started := h.snapshot(); len(started) != conc+round {
			t.Fatalf("round %d: %d jobs started after %d finished, want %d: a pull asked for more than the free slots", round, len(started), round, conc+round)
		}
		eventually(t, 5*time.Second, "the consumer to hold only the jobs in flight", func() bool {
			return r.ackPending(t) == conc
		})
		if n, _, _ := h.snapshot(); n != conc {
			t.Fatalf("round %d: %d jobs in flight, want %d", round, n, conc)
		}
	}
	for range total - 3 {
		h.release <- struct{}{}
	}
	eventually(t, 10*time.Second, "every job to finish", func() bool { return obs.count() == total })
	if _, maxIn, _ := h.snapshot(); maxIn > conc {
		t.Errorf("%d jobs were in flight at once, want at most %d", maxIn, conc)
	}
	if n := r.storedCount(t, r.names.JobsStream()); n != 0 {
		t.Errorf("%d jobs left in the jobs stream, want 0", n)
	}
}

// advisory is a JetStream consumer advisory about one message.
type advisory struct {
	kind   string // MSG_NAKED or MSG_TERMINATED
	Seq    uint64 `json:"stream_seq"`
	Reason string `json:"reason"`
}

// watchAdvisories collects the nak and term advisories of the jobs
// consumer.
func (r *rig) watchAdvisories(t *testing.T) func() []advisory {
	t.Helper()
	var (
		mu  sync.Mutex
		got []advisory
	)
	for _, kind := range []string{"MSG_NAKED", "MSG_TERMINATED"} {
		subject := "$JS.EVENT.ADVISORY.CONSUMER." + kind + "." + r.names.JobsStream() + "." + queue.ConsumerName
		sub, err := r.nc.Subscribe(subject, func(m *nats.Msg) {
			a := advisory{kind: kind}
			if err := json.Unmarshal(m.Data, &a); err != nil {
				t.Errorf("advisory %s: %v", m.Data, err)
			}
			mu.Lock()
			got = append(got, a)
			mu.Unlock()
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = sub.Unsubscribe() })
	}
	if err := r.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return func() []advisory {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(got)
	}
}

// TestDispositions: Ack acknowledges a job, Term terminates it with the
// dead letter's reason, Retry hands it back with a nak for redelivery after
// the delay asked for (not after the ack wait).
func TestDispositions(t *testing.T) {
	r := newRig(t)
	advisories := r.watchAdvisories(t)
	// Stream sequences 1, 2 and 3.
	r.publish(t, "test", spec{ID: "acked", Do: "ack"}, spec{ID: "termed", Do: "term"}, spec{ID: "retried", Do: "retry"})
	h, obs := newFakeHandler(), &fakeObserver{}
	r.start(t, h, obs, Config{Concurrency: 4})
	eventually(t, 10*time.Second, "all three jobs to finish", func() bool { return obs.count() == 3 })
	eventually(t, 5*time.Second, "the nak and the term advisories", func() bool { return len(advisories()) >= 2 })

	want := []advisory{
		{kind: "MSG_TERMINATED", Seq: 2, Reason: "rejected: bad job"},
		{kind: "MSG_NAKED", Seq: 3},
	}
	got := advisories()
	slices.SortFunc(got, func(a, b advisory) int { return int(a.Seq) - int(b.Seq) })
	if !slices.Equal(got, want) {
		t.Errorf("advisories %+v, want %+v (and none for the acknowledged job)", got, want)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for id, n := range map[string]int{"acked": 1, "termed": 1, "retried": 2} {
		if len(h.seen[id]) != n {
			t.Errorf("%s delivered %d times, want %d", id, len(h.seen[id]), n)
		}
	}
	if seen := h.seen["retried"]; len(seen) == 2 {
		gap := seen[1].Sub(seen[0])
		if gap < retryDelay || gap >= ackWait/2 {
			t.Errorf("retried job redelivered after %s, want at least the %s asked for and well before the ack wait (%s)", gap, retryDelay, ackWait)
		}
		if d := h.numDeliv["retried"]; d[1] != 2 {
			t.Errorf("second delivery counted %d deliveries, want 2", d[1])
		}
	}
	if n := r.storedCount(t, r.names.JobsStream()); n != 0 {
		t.Errorf("%d jobs left in the jobs stream, want 0", n)
	}
	if n := r.storedCount(t, r.names.ResultsStream()); n != 3 {
		t.Errorf("%d results stored, want 3 (none for the handed-back delivery)", n)
	}
}

// TestDeadLetterPerFailedJob: a failed job (acknowledged) and a rejected
// one (terminated) each get one dead letter on the DLQ subject of their
// source, quoting the job, stored before the result; a succeeded job gets
// none.
func TestDeadLetterPerFailedJob(t *testing.T) {
	r := newRig(t)
	jobs := []spec{{ID: "ok", Do: "ack"}, {ID: "failed", Do: "fail"}, {ID: "rejected", Do: "term"}}
	r.publish(t, "test", jobs...)
	h, obs := newFakeHandler(), &fakeObserver{}
	r.start(t, h, obs, Config{Concurrency: 4})
	eventually(t, 10*time.Second, "all three jobs to finish", func() bool { return obs.count() == 3 })

	want := map[string]struct {
		seq    uint64
		reason string
		status wire.Status
	}{
		"failed":   {2, "failed: graph kept failing", wire.Failed},
		"rejected": {3, "rejected: bad job", wire.Rejected},
	}
	msgs := r.streamMsgs(t, r.names.DLQStream())
	if len(msgs) != len(want) {
		t.Fatalf("%d dead letters, want %d", len(msgs), len(want))
	}
	resultAt := map[string]time.Time{}
	for _, m := range r.streamMsgs(t, r.names.ResultsStream()) {
		var res wire.Result
		if err := json.Unmarshal(m.Data, &res); err != nil {
			t.Fatal(err)
		}
		resultAt[res.JobID] = m.Time
	}
	for _, m := range msgs {
		var dl wire.DeadLetter
		if err := json.Unmarshal(m.Data, &dl); err != nil {
			t.Fatalf("dead letter %s: %v", m.Data, err)
		}
		w, ok := want[dl.JobID]
		if !ok {
			t.Errorf("dead letter for %q", dl.JobID)
			continue
		}
		quoted, _ := json.Marshal(jobs[w.seq-1])
		switch {
		case m.Subject != r.names.DLQ("test"):
			t.Errorf("%s: dead letter on %s, want %s", dl.JobID, m.Subject, r.names.DLQ("test"))
		case m.Header.Get(jetstream.MsgIDHeader) != dl.JobID+"/dlq":
			t.Errorf("%s: Nats-Msg-Id %q, want %q", dl.JobID, m.Header.Get(jetstream.MsgIDHeader), dl.JobID+"/dlq")
		case dl.Reason != w.reason || dl.Source != "test" || dl.Subject != r.names.Jobs("test") || dl.Sequence != w.seq:
			t.Errorf("%s: dead letter %+v, want reason %q, source test, subject %s, sequence %d", dl.JobID, dl, w.reason, r.names.Jobs("test"), w.seq)
		case dl.Job != string(quoted) || dl.JobSize != len(quoted) || dl.JobTruncated || dl.JobBase64 != "":
			t.Errorf("%s: quotes the job as %q (%d bytes), want %s", dl.JobID, dl.Job, dl.JobSize, quoted)
		case dl.Result == nil || dl.Result.Status != w.status || dl.At.IsZero():
			t.Errorf("%s: dead letter result %+v at %s, want status %s", dl.JobID, dl.Result, dl.At, w.status)
		case !m.Time.Before(resultAt[dl.JobID]):
			t.Errorf("%s: dead letter stored at %s, result at %s: whoever sees the result must find the dead letter", dl.JobID, m.Time, resultAt[dl.JobID])
		}
	}
	obs.mu.Lock()
	defer obs.mu.Unlock()
	for id, dead := range map[string]bool{"ok": false, "failed": true, "rejected": true} {
		if obs.dead[id] != dead {
			t.Errorf("%s reported dead-lettered=%v, want %v", id, obs.dead[id], dead)
		}
	}
}

// TestResultStoredOncePerJob: a result is stored with Nats-Msg-Id
// <jobId>/result, so a job delivered twice has one stored result; a reply
// subject outside the results stream gets the result as well, one inside it
// is where the result is stored.
func TestResultStoredOncePerJob(t *testing.T) {
	r := newRig(t)
	inbox := nats.NewInbox()
	replies, err := r.nc.SubscribeSync(inbox)
	if err != nil {
		t.Fatal(err)
	}
	custom := r.names.Result("test", "elsewhere")
	r.publish(t, "test",
		spec{ID: "twice", Do: "ack"}, spec{ID: "twice", Do: "ack"},
		spec{ID: "inbox", Do: "ack", ReplyTo: inbox},
		spec{ID: "custom", Do: "ack", ReplyTo: custom})
	h, obs := newFakeHandler(), &fakeObserver{}
	r.start(t, h, obs, Config{Concurrency: 1})
	eventually(t, 10*time.Second, "every delivery to finish", func() bool { return obs.count() == 4 })

	want := map[string]string{ // job id: subject of its one stored result
		"twice":  r.names.Result("test", "twice"),
		"inbox":  r.names.Result("test", "inbox"),
		"custom": custom,
	}
	got := map[string]string{}
	for _, m := range r.streamMsgs(t, r.names.ResultsStream()) {
		var res wire.Result
		if err := json.Unmarshal(m.Data, &res); err != nil {
			t.Fatalf("result %s: %v", m.Data, err)
		}
		if prev, dup := got[res.JobID]; dup {
			t.Errorf("%s: a second result on %s (first on %s)", res.JobID, m.Subject, prev)
		}
		got[res.JobID] = m.Subject
		if id := m.Header.Get(jetstream.MsgIDHeader); id != res.JobID+"/result" {
			t.Errorf("%s: Nats-Msg-Id %q, want %q", res.JobID, id, res.JobID+"/result")
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("stored results %v, want %v", got, want)
	}
	m, err := replies.NextMsg(5 * time.Second)
	if err != nil {
		t.Fatalf("no result on the reply inbox: %v", err)
	}
	var res wire.Result
	if err := json.Unmarshal(m.Data, &res); err != nil || res.JobID != "inbox" {
		t.Errorf("reply inbox got %s (%v), want job inbox's result", m.Data, err)
	}
}

// TestSoftStopDrains: a soft stop takes no new job, lets the jobs in flight
// finish (their contexts are not cancelled) and returns once they have.
func TestSoftStopDrains(t *testing.T) {
	r := newRig(t)
	const conc = 2
	var specs []spec
	for i := range 5 {
		specs = append(specs, spec{ID: fmt.Sprintf("drain-%d", i), Do: "ack", Block: true})
	}
	r.publish(t, "test", specs...)
	h, obs := newFakeHandler(), &fakeObserver{}
	run := r.start(t, h, obs, Config{Concurrency: conc})
	eventually(t, 5*time.Second, "the slots to fill", func() bool {
		n, _, _ := h.snapshot()
		return n == conc
	})
	run.stop()
	for range conc {
		h.release <- struct{}{}
	}
	if err := run.wait(t, 10*time.Second); err != nil {
		t.Fatalf("Run: %v", err)
	}
	_, _, started := h.snapshot()
	if len(started) != conc || obs.count() != conc || h.cancelledCount() != 0 {
		t.Errorf("after the stop: %d jobs started, %d finished, %d cancelled; want %d, %d, 0", len(started), obs.count(), h.cancelledCount(), conc, conc)
	}
	if n := r.storedCount(t, r.names.JobsStream()); n != 5-conc {
		t.Errorf("%d jobs left in the jobs stream, want %d", n, 5-conc)
	}
}

// TestHardStopHandsBack: a hard stop cancels the jobs in flight, which are
// handed back, and returns without waiting for the drain timeout.
func TestHardStopHandsBack(t *testing.T) {
	r := newRig(t)
	r.publish(t, "test", spec{ID: "hard-1", Do: "ack", Block: true}, spec{ID: "hard-2", Do: "ack", Block: true})
	h, obs := newFakeHandler(), &fakeObserver{}
	run := r.start(t, h, obs, Config{Concurrency: 2, DrainTimeout: time.Minute})
	eventually(t, 5*time.Second, "both jobs in flight", func() bool {
		n, _, _ := h.snapshot()
		return n == 2
	})
	run.stop()
	run.kill()
	if err := run.wait(t, 10*time.Second); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if h.cancelledCount() != 2 || obs.count() != 0 {
		t.Errorf("%d jobs cancelled, %d finished; want 2 and 0", h.cancelledCount(), obs.count())
	}
	if n := r.storedCount(t, r.names.JobsStream()); n != 2 {
		t.Errorf("%d jobs in the jobs stream, want both handed back", n)
	}
}

// TestDrainTimeout: jobs still in flight when the drain timeout passes are
// cancelled and handed back, and Run says so.
func TestDrainTimeout(t *testing.T) {
	r := newRig(t)
	r.publish(t, "test", spec{ID: "slow", Do: "ack", Block: true})
	h, obs := newFakeHandler(), &fakeObserver{}
	run := r.start(t, h, obs, Config{Concurrency: 1, DrainTimeout: 200 * time.Millisecond})
	eventually(t, 5*time.Second, "the job in flight", func() bool {
		n, _, _ := h.snapshot()
		return n == 1
	})
	run.stop()
	err := run.wait(t, 10*time.Second)
	if err == nil || !strings.Contains(err.Error(), "drain timed out") {
		t.Errorf("Run: %v, want the drain timeout", err)
	}
	if h.cancelledCount() != 1 || obs.count() != 0 {
		t.Errorf("%d jobs cancelled, %d finished; want 1 and 0", h.cancelledCount(), obs.count())
	}
}

// TestBrokenCredentialsStopIntake: a handler that found no token makes
// the worker stop taking jobs, say so on /readyz and count token errors
// while it probes for one; once a token can be had, it takes jobs again.
func TestBrokenCredentialsStopIntake(t *testing.T) {
	r := newRig(t)
	var broken atomic.Bool
	var probes atomic.Int32
	probe := func(ctx context.Context, refresh bool) error {
		probes.Add(1)
		if broken.Load() {
			return errors.New("no token: AADSTS7000222 the client secret expired")
		}
		return nil
	}
	h, obs := newFakeHandler(), &fakeObserver{}
	run := r.start(t, h, obs, Config{Concurrency: 4, Probe: probe})
	eventually(t, 5*time.Second, "the first probe", func() bool { return probes.Load() >= 1 })
	broken.Store(true)
	r.publish(t, "test", spec{ID: "nocreds", Do: "nocreds"})
	eventually(t, 5*time.Second, "readyz to report the credentials", func() bool {
		return strings.Contains(strings.Join(run.w.cfg.Health.Problems(), "\n"), "AADSTS7000222")
	})
	r.publish(t, "test", spec{ID: "meanwhile", Do: "ack"})
	before := probes.Load()
	eventually(t, 10*time.Second, "the worker to probe again", func() bool { return probes.Load() > before })
	if _, _, started := h.snapshot(); slices.Contains(started, "meanwhile") {
		t.Fatalf("a job was taken while no token could be had: %v", started)
	}
	broken.Store(false)
	eventually(t, 10*time.Second, "both jobs to finish once a token can be had", func() bool { return obs.count() == 2 })
	obs.mu.Lock()
	defer obs.mu.Unlock()
	if obs.tokenErrors < 2 {
		t.Errorf("%d token errors counted, want one for the handler's report and one per failed probe", obs.tokenErrors)
	}
	if p := run.w.cfg.Health.Problems(); slices.ContainsFunc(p, func(s string) bool { return strings.HasPrefix(s, "credentials") }) {
		t.Errorf("readyz still reports %v", p)
	}
}
