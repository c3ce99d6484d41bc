package job_test

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/recoverpasscode/recoverpasscode/devserver"
	"github.com/recoverpasscode/recoverpasscode/graph/graphsim"
	"github.com/recoverpasscode/recoverpasscode/idempotency"
	"github.com/recoverpasscode/recoverpasscode/job"
	"github.com/recoverpasscode/recoverpasscode/wire"
)

// flakyLedger is the real store whose Complete fails, before reaching it,
// as it does while NATS is unreachable: the first `fail` calls return err.
type flakyLedger struct {
	*idempotency.Store
	fail  atomic.Int32
	err   error
	calls atomic.Int32
}

func (l *flakyLedger) Complete(ctx context.Context, c *idempotency.Claim, status string, outcome []byte) error {
	l.calls.Add(1)
	if l.fail.Add(-1) >= 0 {
		return fmt.Errorf("idempotency: complete: %w", l.err)
	}
	return l.Store.Complete(ctx, c, status, outcome)
}

// After Graph acted, a failed write of the outcome is retried, within the
// inline wait, until it lands or the key is lost: giving up would let
// another worker act on the key again.
func TestOutcomeWriteIsRetried(t *testing.T) {
	ns := devserver.StartForTest(t)
	gs := graphsim.New(graphsim.Config{Limit: -1})
	t.Cleanup(gs.Close)
	gs.AddTenant(benchTenant)
	gs.AddApp(benchClient, benchSecret)
	srv := benchServers{NATS: ns.URL(), Graph: gs.GraphURL(), Authority: gs.AuthorityHost(), CA: gs.CACertPEM()}

	tests := []struct {
		name          string
		fail          int32
		err           error
		wantCalls     int32
		wantUncertain bool
	}{
		{"a blip: two failures, then stored", 2, nats.ErrTimeout, 3, false},
		{"an outage longer than the inline wait", 1 << 20, nats.ErrTimeout, 3, true},
		{"the key was lost: no retry", 1 << 20, idempotency.ErrLost, 1, true},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ledger *flakyLedger
			h, store := newBenchHandlerWith(t, srv, func(c *job.Config) {
				ledger = &flakyLedger{Store: c.Ledger.(*idempotency.Store), err: tt.err}
				ledger.fail.Store(tt.fail)
				c.Ledger = ledger
				c.MaxInlineWait = 1500 * time.Millisecond // retries after 250 and 500 ms fit, the next 1 s does not
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
			if got := ledger.calls.Load(); got != tt.wantCalls {
				t.Errorf("Complete called %d times, want %d", got, tt.wantCalls)
			}
			if got := len(gs.Calls()) - before; got != 1 {
				t.Errorf("graph saw %d calls, want 1", got)
			}
			c, err := store.Claim(t.Context(), job.LedgerKey(&wire.Job{TenantID: benchTenant, IdempotencyKey: id}), "next")
			if err != nil {
				t.Fatal(err)
			}
			if wantDone := !tt.wantUncertain; (c.State == idempotency.Done) != wantDone {
				t.Errorf("the key's record is %s afterwards; want done: %v", c.State, wantDone)
			}
		})
	}
}
