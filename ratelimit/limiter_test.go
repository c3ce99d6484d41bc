package ratelimit

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestWaitReturnsOnCancel checks that Wait gives up promptly with ctx's
// error, or ErrClosed, whatever it is waiting for.
func TestWaitReturnsOnCancel(t *testing.T) {
	f := newFleet(t, 1, Config{App: testApp, Rate: Rate{N: 2, Per: time.Minute}})
	l := f.limiters[0]
	full, paused := tenantA, tenantB
	for range 2 {
		if _, err := l.Wait(t.Context(), full); err != nil {
			t.Fatalf("Wait: %v", err)
		}
	}
	if err := l.Pause(t.Context(), paused, time.Now().Add(time.Hour)); err != nil {
		t.Fatalf("Pause: %v", err)
	}

	const prompt = 250 * time.Millisecond
	for _, tc := range []struct {
		name   string
		tenant string
		cancel func(context.CancelFunc)
		want   error
	}{
		{"deadline on the window", full, nil, context.DeadlineExceeded},
		{"cancel on the window", full, func(c context.CancelFunc) { c() }, context.Canceled},
		{"deadline on a pause", paused, nil, context.DeadlineExceeded},
		{"cancel on a pause", paused, func(c context.CancelFunc) { c() }, context.Canceled},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// A cancel case has no deadline: on a loaded host its timer
			// may fire after any deadline would have.
			ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
			if tc.cancel != nil {
				ctx, cancel = context.WithCancel(t.Context())
			}
			defer cancel()
			var ended atomic.Int64
			ended.Store(time.Now().Add(100 * time.Millisecond).UnixNano())
			if tc.cancel != nil {
				timer := time.AfterFunc(50*time.Millisecond, func() {
					ended.Store(time.Now().UnixNano())
					tc.cancel(cancel)
				})
				defer timer.Stop()
			}
			_, err := l.Wait(ctx, tc.tenant)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Wait = %v, want %v", err, tc.want)
			}
			if late := time.Since(time.Unix(0, ended.Load())); late > prompt {
				t.Errorf("Wait took %s to notice", late)
			}
		})
	}

	t.Run("the fetch stops when every waiter gave up", func(t *testing.T) {
		tn, err := l.tenant(full)
		if err != nil {
			t.Fatal(err)
		}
		eventually(t, time.Second, "the fetch goroutine to stop", func() bool {
			l.mu.Lock()
			defer l.mu.Unlock()
			return !tn.fetching && len(tn.queue) == 0
		})
	})

	t.Run("Close releases waiters", func(t *testing.T) {
		var wg sync.WaitGroup
		for _, tenant := range []string{full, paused} {
			wg.Go(func() {
				if _, err := l.Wait(t.Context(), tenant); !errors.Is(err, ErrClosed) {
					t.Errorf("Wait for %s across Close = %v, want ErrClosed", tenant, err)
				}
			})
		}
		eventually(t, time.Second, "a waiter to queue", func() bool {
			l.mu.Lock()
			defer l.mu.Unlock()
			return len(l.tenants[keyToken(full)].queue) == 1
		})
		if err := l.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		wg.Wait()
		if _, err := l.Wait(t.Context(), full); !errors.Is(err, ErrClosed) {
			t.Errorf("Wait after Close = %v, want ErrClosed", err)
		}
		if err := l.Pause(t.Context(), full, time.Now().Add(time.Hour)); !errors.Is(err, ErrClosed) {
			t.Errorf("Pause after Close = %v, want ErrClosed", err)
		}
	})
}

// TestExpiredPermitsAreNotUsed is the case that stamping grants with their
// latest use time exists for. One Limiter is granted the whole window in a
// batch that it then leaves unused; if it could use those permits just
// before the window ends, and the fleet took N more just after, 2N calls
// would start within little more than one window. Instead the permits
// expire Validity after the grant, nobody may start a call until a full
// window after that, and the stale permits are discarded.
func TestExpiredPermitsAreNotUsed(t *testing.T) {
	rate := Rate{N: 10, Per: 500 * time.Millisecond}
	// A validity well above a loaded machine's KV round trip, so that the
	// grant below arrives before its permits expire.
	const validity = 100 * time.Millisecond
	f := newFleet(t, 2, Config{App: testApp, Rate: rate, Batch: 10, Validity: validity})
	hoarder, other := f.limiters[0], f.limiters[1]

	tn, err := hoarder.tenant(tenantA)
	if err != nil {
		t.Fatal(err)
	}
	granted := time.Now()
	r, err := hoarder.reserve(tn, rate.N)
	if err != nil || r.n != rate.N {
		t.Fatalf("reserve = %+v, %v; want %d permits", r, err, rate.N)
	}
	hoarder.mu.Lock()
	tn.deliver(r.n, slot{until: r.until, stamp: r.stamp}) // nobody is waiting: all go to the pool
	hoarder.mu.Unlock()

	entry, err := f.kv.Get(t.Context(), tn.key)
	if err != nil {
		t.Fatalf("get window: %v", err)
	}
	w, err := decodeWindow(entry.Value())
	if err != nil {
		t.Fatal(err)
	}
	stamp := time.UnixMilli(w.Grants[0].Until)
	if len(w.Grants) != 1 || w.Grants[0].N != rate.N || stamp.Before(r.until) || stamp.After(time.Now().Add(validity+time.Millisecond)) {
		t.Fatalf("window log %+v: want one grant of %d stamped with its latest use, %s after the grant", w, rate.N, validity)
	}

	// Use of the pooled permits is fine until they expire...
	if _, err := hoarder.Wait(t.Context(), tenantA); err != nil {
		t.Fatalf("Wait: %v", err)
	}
	if st := hoarder.Stats(); st.KVOps != 2 {
		t.Errorf("a pooled permit cost KV operations: %+v", st)
	}
	// ...but not after: both Limiters must wait a window past the stamp.
	<-time.After(time.Until(r.until))
	for _, l := range []*Limiter{hoarder, other} {
		if _, err := l.Wait(waitCtx(t, 5*time.Second), tenantA); err != nil {
			t.Fatalf("Wait: %v", err)
		}
		if now := time.Now(); now.Before(stamp.Add(rate.Per)) {
			t.Errorf("a call started %s after the first grant, within one window of its permits' last use", now.Sub(granted))
		}
	}
	if st := hoarder.Stats(); st.Discarded != uint64(rate.N-1) {
		t.Errorf("discarded %d expired permits, want %d", st.Discarded, rate.N-1)
	}
}

// TestWaitersShareRoundTrips has many goroutines of one Limiter wait for
// one tenant at once and checks that they were served by a few KV updates,
// not one each.
func TestWaitersShareRoundTrips(t *testing.T) {
	rate := Rate{N: 40, Per: time.Second}
	f := newFleet(t, 1, Config{App: testApp, Rate: rate, Batch: 40})
	l := f.limiters[0]
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range rate.N {
		wg.Go(func() {
			<-start
			if _, err := l.Wait(t.Context(), tenantA); err != nil {
				t.Errorf("Wait: %v", err)
			}
		})
	}
	close(start)
	wg.Wait()
	st := l.Stats()
	t.Logf("%d waits: %+v", rate.N, st)
	if st.Waits != uint64(rate.N) || st.KVOps > 8 {
		t.Errorf("Stats = %+v, want %d waits served by a few KV operations", st, rate.N)
	}
}

// TestTenantsAreSeparate checks that a full window for one tenant, or for
// one app, does not hold back another.
func TestTenantsAreSeparate(t *testing.T) {
	rate := Rate{N: 1, Per: time.Hour}
	f := newFleet(t, 1, Config{App: testApp, Rate: rate})
	otherApp := f.open(t, 1, Config{App: "7f1c1a2e-8d0b-4c57-9a53-0b1f2a3c4d5e", Rate: rate})
	for _, c := range []struct {
		l      *Limiter
		tenant string
	}{{f.limiters[0], tenantA}, {f.limiters[0], tenantB}, {otherApp, tenantA}} {
		if _, err := c.l.Wait(waitCtx(t, 2*time.Second), c.tenant); err != nil {
			t.Fatalf("first Wait for %s: %v", c.tenant, err)
		}
	}
	if _, err := f.limiters[0].Wait(waitCtx(t, 50*time.Millisecond), strings.ToUpper(tenantA)); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("second Wait for the same tenant spelled in capitals = %v, want to block", err)
	}
}

// TestWatchKeepsWindowsFresh checks that a Limiter learns of another's
// grants from its watch, without reading the key: b knows a's first grant
// before it makes any KV call, takes its own permit with the one write,
// and follows a's next grants with no call at all.
func TestWatchKeepsWindowsFresh(t *testing.T) {
	f := newFleet(t, 2, Config{App: testApp, Rate: Rate{N: 100, Per: time.Minute}})
	a, b := f.limiters[0], f.limiters[1]
	ta, _ := a.tenant(tenantA)
	tb, _ := b.tenant(tenantA)
	caughtUp := func(what string, grants int) {
		t.Helper()
		eventually(t, 2*time.Second, what, func() bool {
			a.mu.Lock()
			want := ta.rev
			a.mu.Unlock()
			b.mu.Lock()
			defer b.mu.Unlock()
			return tb.known && tb.rev == want && permits(tb.grants) == grants
		})
	}
	wait := func(l *Limiter) {
		t.Helper()
		if _, err := l.Wait(t.Context(), tenantA); err != nil {
			t.Fatalf("Wait: %v", err)
		}
	}
	wait(a)
	caughtUp("b's cache to learn a's first grant", 1)
	if st := b.Stats(); st.KVOps != 0 {
		t.Errorf("b made %d KV calls to learn a's grant, want none", st.KVOps)
	}
	wait(b)
	wait(a)
	wait(a)
	caughtUp("b's cache to catch up with a's writes", 4)
	if st := b.Stats(); st.KVOps != 1 {
		t.Errorf("b made %d KV calls for one permit, want its one write", st.KVOps)
	}
}

// TestCloseAfterWatchConsumerGone: a bucket watch whose consumer the server
// has already removed is stopped by Close, not reported as an error.
func TestCloseAfterWatchConsumerGone(t *testing.T) {
	f := newFleet(t, 0, Config{App: testApp})
	js := connect(t, f.url)
	stream, err := js.Stream(t.Context(), "KV_"+testBucket)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	kv, err := connect(t, f.url).KeyValue(ctx, testBucket)
	if err != nil {
		t.Fatal(err)
	}
	l, err := New(ctx, kv, Config{App: testApp, Owner: "gone"})
	if err != nil {
		t.Fatal(err)
	}
	deleted := 0
	for name := range stream.ConsumerNames(ctx).Name() {
		if err := stream.DeleteConsumer(ctx, name); err != nil {
			t.Fatalf("delete consumer %s: %v", name, err)
		}
		deleted++
	}
	if deleted != 1 {
		t.Fatalf("deleted %d consumers, want the watch's one", deleted)
	}
	if err := l.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
}
