package job_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/recoverpasscode/recoverpasscode/devserver/devservertest"
	"github.com/recoverpasscode/recoverpasscode/graph/graphsim"
	"github.com/recoverpasscode/recoverpasscode/idempotency"
	"github.com/recoverpasscode/recoverpasscode/job"
	"github.com/recoverpasscode/recoverpasscode/wire"
)

// flakyKeys is the real keys bucket, whose writes of an outcome (a record
// turning done) go wrong: the first `fail` ones fail before reaching the
// server, as they do while NATS is unreachable; with takenOver, another
// worker takes the key over just before each lands.
type flakyKeys struct {
	jetstream.KeyValue
	fail      atomic.Int32
	takenOver bool
	calls     atomic.Int32
}

func (kv *flakyKeys) Update(ctx context.Context, key string, value []byte, last uint64) (uint64, error) {
	var rec map[string]any
	if err := json.Unmarshal(value, &rec); err != nil || rec["phase"] != "done" {
		return kv.KeyValue.Update(ctx, key, value, last)
	}
	kv.calls.Add(1)
	if kv.fail.Add(-1) >= 0 {
		return 0, nats.ErrTimeout
	}
	if kv.takenOver {
		if err := kv.takeOver(ctx, key); err != nil {
			return 0, err
		}
	}
	return kv.KeyValue.Update(ctx, key, value, last)
}

// takeOver rewrites the record as another worker's, as a takeover after an
// expired lease does.
func (kv *flakyKeys) takeOver(ctx context.Context, key string) error {
	e, err := kv.Get(ctx, key)
	if err != nil {
		return err
	}
	var rec map[string]any
	if err := json.Unmarshal(e.Value(), &rec); err != nil {
		return err
	}
	rec["owner"], rec["jobId"], rec["token"] = "other-worker", "other-job", "another-acquisition"
	data, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	_, err = kv.KeyValue.Update(ctx, key, data, e.Revision())
	return err
}

// lines is a log destination that counts its lines; safe for concurrent
// use.
type lines struct {
	mu  sync.Mutex
	buf []string
}

func (l *lines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = append(l.buf, string(p))
	return len(p), nil
}

// count returns the number of lines that contain s.
func (l *lines) count(s string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, line := range l.buf {
		if strings.Contains(line, s) {
			n++
		}
	}
	return n
}

// After Graph acted, a failed write of the outcome is retried, within the
// store's retry window, until it lands or the key is lost: giving up would
// let another worker act on the key again.
func TestOutcomeWriteIsRetried(t *testing.T) {
	ns := devservertest.Start(t)
	gs := graphsim.New(graphsim.Config{Limit: -1})
	t.Cleanup(gs.Close)
	gs.AddTenant(benchTenant)
	gs.AddApp(benchClient, benchSecret)
	srv := benchServers{NATS: ns.URL(), Graph: gs.GraphURL(), Authority: gs.AuthorityHost(), CA: gs.CACertPEM()}

	tests := []struct {
		name          string
		fail          int32
		takenOver     bool
		wantCalls     int32
		wantUncertain bool
	}{
		{"a blip: two failures, then stored", 2, false, 3, false},
		{"an outage longer than the retry window", 1 << 20, false, 3, true},
		{"the key was lost: no retry", 0, true, 1, true},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var keys *flakyKeys
			var storeLog lines
			h, store := newBenchHandlerWith(t, srv, func(_ *job.Config, sc *idempotency.Config, kv *jetstream.KeyValue) {
				keys = &flakyKeys{KeyValue: *kv, takenOver: tt.takenOver}
				keys.fail.Store(tt.fail)
				*kv = keys
				sc.OutcomeRetry = 1500 * time.Millisecond // retries after 250 and 500 ms fit, the next 1 s does not
				sc.Logger = zerolog.New(&storeLog)
			})
			before := len(gs.Calls())
			id := fmt.Sprintf("record-%d", i)
			out := h.Handle(t.Context(), benchDelivery(id, uint64(i+1)))

			if out.Result == nil || out.Result.Status != wire.Succeeded || out.Result.Uncertain != tt.wantUncertain {
				t.Fatalf("outcome %+v, result %+v; want succeeded, uncertain=%v", out, out.Result, tt.wantUncertain)
			}
			if tt.wantUncertain && !strings.Contains(out.Result.UncertainReason, "could not be recorded") {
				t.Errorf("uncertain reason %q does not say the outcome went unrecorded", out.Result.UncertainReason)
			}
			if got := keys.calls.Load(); got != tt.wantCalls {
				t.Errorf("the outcome was written %d times, want %d", got, tt.wantCalls)
			}
			// A lost key stops the retries before they reach the bucket:
			// count them in the log.
			if got := storeLog.count("could not store the outcome yet; retrying"); got != int(tt.wantCalls)-1 {
				t.Errorf("the outcome write was retried %d times, want %d", got, tt.wantCalls-1)
			}
			if got := len(gs.Calls()) - before; got != 1 {
				t.Errorf("graph saw %d calls, want 1", got)
			}
			c, err := store.Acquire(t.Context(), job.LedgerKey(&wire.Job{TenantID: benchTenant, IdempotencyKey: id}), "next")
			if err != nil {
				t.Fatal(err)
			}
			if wantDone := !tt.wantUncertain; (c.State == idempotency.Done) != wantDone {
				t.Errorf("the key's record is %s afterwards; want done: %v", c.State, wantDone)
			}
		})
	}
}
