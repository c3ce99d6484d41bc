package idempotency_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/recoverpasscode/recoverpasscode/idempotency"
)

// TestConcurrentClaimsOneWinner races 50 jobs with the same key over four
// workers, each with its own connection: exactly one acquires, every other
// job finds it busy and awaits, and all end with the winner's outcome.
func TestConcurrentClaimsOneWinner(t *testing.T) {
	const workers, jobs, key = 4, 50, "INC0099999/race"
	srv := startBucket(t)
	stores := make([]*idempotency.Store, workers)
	for i := range stores {
		stores[i] = newStore(t, srv, fmt.Sprintf("worker-%d", i), 30*time.Second)
	}
	ctx := testCtx(t)

	type ending struct {
		acquired, awaited bool
		claim             idempotency.Claim
		err               error
	}
	endings := make([]ending, jobs)
	start := make(chan struct{})
	// The winner holds the key until every job has claimed, so that the
	// others really wait rather than find the key already done.
	var wg, claimed sync.WaitGroup
	claimed.Add(jobs)
	for i := range jobs {
		wg.Go(func() {
			s, job := stores[i%workers], fmt.Sprintf("job-%02d", i)
			<-start
			c, err := s.Acquire(ctx, key, job)
			claimed.Done()
			if err != nil {
				endings[i].err = err
				return
			}
			switch c.State {
			case idempotency.Acquired:
				endings[i].acquired = true
				claimed.Wait()
				if err := call(ctx, c, idempotency.Acted); err != nil {
					endings[i].err = err
					return
				}
				endings[i].err = c.Lease.Complete(ctx, "succeeded", fmt.Appendf(nil, `{"winner":%q}`, job))
				c, endings[i].err = s.Acquire(ctx, key, job)
			case idempotency.Busy:
				endings[i].awaited = true
				c, endings[i].err = s.Await(ctx, c)
			}
			endings[i].claim = c
		})
	}
	close(start)
	wg.Wait()

	var winners, awaited []string
	for i, e := range endings {
		if e.err != nil {
			t.Fatalf("job-%02d: %v", i, e.err)
		}
		if e.acquired {
			winners = append(winners, fmt.Sprintf("job-%02d", i))
		}
		if e.awaited {
			awaited = append(awaited, fmt.Sprintf("job-%02d", i))
		}
	}
	if len(winners) != 1 {
		t.Fatalf("acquired by %v, want exactly one job", winners)
	}
	if len(awaited) != jobs-1 {
		t.Errorf("%d jobs awaited, want %d", len(awaited), jobs-1)
	}
	want := fmt.Sprintf(`{"winner":%q}`, winners[0])
	for i, e := range endings {
		if e.claim.State != idempotency.Done || string(e.claim.Outcome) != want || e.claim.JobID != winners[0] {
			t.Errorf("job-%02d ended with %s %s by %s, want Done %s by %s",
				i, e.claim.State, e.claim.Outcome, e.claim.JobID, want, winners[0])
		}
	}
	var ops idempotency.Stats
	for _, s := range stores {
		st := s.Stats()
		ops.Creates += st.Creates
		ops.Gets += st.Gets
		ops.Updates += st.Updates
		ops.Watches += st.Watches
		ops.Conflicts += st.Conflicts
	}
	t.Logf("winner %s; KV ops for %d jobs: %d (%+v)", winners[0], jobs, ops.Ops(), ops)
}

// TestConcurrentTakeoverOneWinner lets a lease expire under ten waiters on
// four workers: exactly one takes it over, the others keep waiting on the
// new holder and end with its outcome.
func TestConcurrentTakeoverOneWinner(t *testing.T) {
	const workers, waiters, key = 4, 10, "INC0099999/takeover"
	srv := startBucket(t)
	stores := make([]*idempotency.Store, workers)
	for i := range stores {
		stores[i] = newStore(t, srv, fmt.Sprintf("worker-%d", i), 30*time.Second)
	}
	ctx := testCtx(t)
	gone := newStore(t, srv, "crashed-worker", 300*time.Millisecond)
	mustClaim(t, gone, key, "job-crashed", idempotency.Acquired)

	endings := make([]idempotency.Claim, waiters)
	errs := make([]error, waiters)
	var takers sync.Map
	var wg sync.WaitGroup
	for i := range waiters {
		wg.Go(func() {
			s, job := stores[i%workers], fmt.Sprintf("job-%02d", i)
			c, err := s.Acquire(ctx, key, job)
			if err == nil {
				c, err = s.Await(ctx, c)
			}
			if err == nil && c.State == idempotency.Acquired {
				takers.Store(job, c.TakenOver)
				err = c.Lease.Complete(ctx, "succeeded", fmt.Appendf(nil, `{"winner":%q}`, job))
				if err == nil {
					c, err = s.Acquire(ctx, key, job)
				}
			}
			endings[i], errs[i] = c, err
		})
	}
	wg.Wait()

	var winners []string
	takers.Range(func(job, takenOver any) bool {
		winners = append(winners, job.(string))
		if !takenOver.(bool) {
			t.Errorf("%s acquired without TakenOver", job)
		}
		return true
	})
	if len(winners) != 1 {
		t.Fatalf("taken over by %v, want exactly one job", winners)
	}
	want := fmt.Sprintf(`{"winner":%q}`, winners[0])
	for i := range endings {
		if errs[i] != nil {
			t.Fatalf("job-%02d: %v", i, errs[i])
		}
		if endings[i].State != idempotency.Done || string(endings[i].Outcome) != want {
			t.Errorf("job-%02d ended with %s %s, want Done %s", i, endings[i].State, endings[i].Outcome, want)
		}
	}
}
