package batch_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/recoverpasscode/recoverpasscode/batch"
	"github.com/recoverpasscode/recoverpasscode/devserver/devservertest"
	"github.com/recoverpasscode/recoverpasscode/queue"
	"github.com/recoverpasscode/recoverpasscode/wire"
)

func startNATS(t *testing.T, setup bool) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	s := devservertest.Start(t)
	nc, err := nats.Connect(s.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if setup {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		if _, err := (queue.Setup{}).Ensure(ctx, js); err != nil {
			t.Fatal(err)
		}
	}
	return nc, js
}

func jobs(n int) []wire.Job {
	out := make([]wire.Job, n)
	for i := range out {
		dev := fmt.Sprintf("2d6a3d0e-8f5c-4d7a-9b1e-%012d", i)
		out[i] = wire.Job{ID: fmt.Sprintf("t-%06d", i), ManagedDeviceID: dev}
	}
	return out
}

// TestPublish: every job is stored once with its id as Nats-Msg-Id; sending
// them again is acknowledged as duplicates and stores nothing.
func TestPublish(t *testing.T) {
	nc, js := startNATS(t, true)
	names := wire.Names{}
	p := &batch.Publisher{NC: nc, MaxPending: 16}
	all := jobs(2000)
	st, err := p.Publish(t.Context(), names.Jobs("batch"), all)
	if err != nil || st.Published != 2000 || st.Duplicates != 0 || st.Rate() <= 0 {
		t.Fatalf("first publish: %+v, %v", st, err)
	}
	again, err := p.Publish(t.Context(), names.Jobs("batch"), all)
	if err != nil || again.Published != 2000 || again.Duplicates != 2000 {
		t.Fatalf("second publish: %+v, %v", again, err)
	}
	s, err := js.Stream(t.Context(), names.JobsStream())
	if err != nil {
		t.Fatal(err)
	}
	if n := s.CachedInfo().State.Msgs; n != 2000 {
		t.Errorf("%d jobs stored, want 2000", n)
	}
	m, err := s.GetMsg(t.Context(), 7)
	if err != nil || m.Header.Get(jetstream.MsgIDHeader) != all[6].ID {
		t.Errorf("message 7: id %q, %v", m.Header.Get(jetstream.MsgIDHeader), err)
	}
}

// TestPublishResendsUnconfirmed: a job whose acknowledgement is not seen in
// time is sent again after a backoff, and the stream stores it once.
func TestPublishResendsUnconfirmed(t *testing.T) {
	nc, js := startNATS(t, true)
	names := wire.Names{}
	// Every asynchronous acknowledgement times out before it can arrive.
	p := &batch.Publisher{NC: nc, MaxPending: 8, AckTimeout: time.Nanosecond}
	st, err := p.Publish(t.Context(), names.Jobs("batch"), jobs(40))
	if err != nil || st.Published != 40 {
		t.Fatalf("publish: %+v, %v", st, err)
	}
	if st.Duplicates == 0 {
		t.Errorf("no job was sent again (%+v): the resend path did not run", st)
	}
	s, err := js.Stream(t.Context(), names.JobsStream())
	if err != nil {
		t.Fatal(err)
	}
	if n := s.CachedInfo().State.Msgs; n != 40 {
		t.Errorf("%d jobs stored, want 40", n)
	}
}

// TestPublishBacksOffRefusals: a job the stream keeps refusing is sent
// again Retries times with growing waits between the resends, then
// reported.
func TestPublishBacksOffRefusals(t *testing.T) {
	nc, js := startNATS(t, false)
	_, err := js.CreateStream(t.Context(), jetstream.StreamConfig{
		Name: "FULL", Subjects: []string{"full.jobs"}, MaxMsgs: 1, Discard: jetstream.DiscardNew,
	})
	if err != nil {
		t.Fatal(err)
	}
	p := &batch.Publisher{NC: nc, Retries: 3}
	start := time.Now()
	st, err := p.Publish(t.Context(), "full.jobs", jobs(2))
	elapsed := time.Since(start)
	if err == nil || st.Published != 1 {
		t.Fatalf("published %d, error %v; want 1 and the stream's refusal", st.Published, err)
	}
	// Three resends: at once, then after at least 50ms and 75ms (100ms and
	// 150ms with 50% jitter).
	if elapsed < 125*time.Millisecond {
		t.Errorf("refused job reported after %s: the resends did not back off", elapsed)
	}
	t.Logf("%s: %v", elapsed, err)
}

// TestPublishWithoutStreams says that no worker has set the streams up.
func TestPublishWithoutStreams(t *testing.T) {
	nc, _ := startNATS(t, false)
	p := &batch.Publisher{NC: nc, Retries: 1}
	st, err := p.Publish(t.Context(), "recoverpasscode.jobs.batch", jobs(50))
	if !errors.Is(err, batch.ErrNoStream) || st.Published != 0 {
		t.Errorf("published %d, error %v; want ErrNoStream", st.Published, err)
	}
}

// TestPublishCancelled stops at once and reports what was acknowledged.
func TestPublishCancelled(t *testing.T) {
	nc, _ := startNATS(t, true)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	p := &batch.Publisher{NC: nc}
	st, err := p.Publish(ctx, "recoverpasscode.jobs.batch", jobs(500))
	if !errors.Is(err, context.Canceled) || st.Published == 500 {
		t.Errorf("published %d, error %v; want context.Canceled early", st.Published, err)
	}
}

// TestResultsBacklogThenLive: the reader returns the stored results, says
// when it has caught up, then waits for new ones.
func TestResultsBacklogThenLive(t *testing.T) {
	_, js := startNATS(t, true)
	names := wire.Names{}
	publish := func(id string) {
		data := fmt.Sprintf(`{"jobId":%q,"status":"succeeded"}`, id)
		if _, err := js.Publish(t.Context(), batch.ResultSubject(names, "batch", "may", id), []byte(data)); err != nil {
			t.Fatal(err)
		}
	}
	publish("may-1")
	publish("may-2")
	if _, err := js.Publish(t.Context(), batch.ResultSubject(names, "batch", "june", "june-1"), []byte(`{"jobId":"june-1"}`)); err != nil {
		t.Fatal(err)
	}
	r, err := batch.OpenResults(t.Context(), js, names, batch.ResultsFilter(names, "batch", "may"))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var seen []string
	if _, err := r.ReadBacklog(t.Context(), func(res wire.Result) { seen = append(seen, res.JobID) }); err != nil {
		t.Fatal(err)
	}
	if r.Backlog() != 2 || fmt.Sprint(seen) != "[may-1 may-2]" || !r.CaughtUp() {
		t.Fatalf("backlog %d, read %v", r.Backlog(), seen)
	}
	publish("may-3")
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	res, err := r.Next(ctx)
	if err != nil || res.JobID != "may-3" {
		t.Errorf("live result %+v, %v", res, err)
	}
}
