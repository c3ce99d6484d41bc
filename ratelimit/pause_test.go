package ratelimit

import (
	"context"
	"sync"
	"testing"
	"time"
)

// TestPause checks that a pause set through one Limiter reaches another
// through its watch and holds back only the paused tenant.
func TestPause(t *testing.T) {
	f := newFleet(t, 2, Config{App: testApp, Rate: Rate{N: 100, Per: time.Second}})
	setter, other := f.limiters[0], f.limiters[1]
	ctx := t.Context()

	t.Run("other limiters hold the tenant and only it", func(t *testing.T) {
		paused, flowing := "11111111-0000-4000-8000-000000000001", "11111111-0000-4000-8000-000000000002"
		until := time.Now().Add(time.Second)
		if err := setter.Pause(ctx, paused, until); err != nil {
			t.Fatalf("Pause: %v", err)
		}
		eventually(t, 2*time.Second, "the other limiter to see the pause", func() bool {
			got, ok := other.PausedUntil(paused)
			return ok && got.Equal(until)
		})

		var wg sync.WaitGroup
		returned := make([]time.Time, 5)
		for i := range returned {
			wg.Go(func() {
				if _, err := other.Wait(ctx, paused); err != nil {
					t.Errorf("Wait for the paused tenant: %v", err)
				}
				returned[i] = time.Now()
			})
		}
		start := time.Now()
		if _, err := other.Wait(ctx, flowing); err != nil {
			t.Fatalf("Wait for another tenant: %v", err)
		}
		if d := time.Since(start); d > 200*time.Millisecond {
			t.Errorf("another tenant waited %s during the pause, want no wait", d)
		}
		wg.Wait()
		for _, r := range returned {
			if r.Before(until) {
				t.Errorf("a call for the paused tenant started %s before the pause ended", until.Sub(r))
			}
		}
	})

	t.Run("a later pause extends and wakes waiters to re-check", func(t *testing.T) {
		tenant := "11111111-0000-4000-8000-000000000003"
		first := time.Now().Add(300 * time.Millisecond)
		if err := setter.Pause(ctx, tenant, first); err != nil {
			t.Fatalf("Pause: %v", err)
		}
		eventually(t, 2*time.Second, "the first pause to arrive", func() bool {
			_, ok := other.PausedUntil(tenant)
			return ok
		})
		done := make(chan time.Time, 1)
		go func() {
			if _, err := other.Wait(waitCtx(t, 5*time.Second), tenant); err != nil {
				t.Errorf("Wait: %v", err)
			}
			done <- time.Now()
		}()
		extended := first.Add(500 * time.Millisecond)
		if err := setter.Pause(ctx, tenant, extended); err != nil {
			t.Fatalf("extend: %v", err)
		}
		if r := <-done; r.Before(extended) {
			t.Errorf("Wait returned %s before the extended pause ended", extended.Sub(r))
		}
	})

	t.Run("an earlier pause never shortens", func(t *testing.T) {
		tenant := "11111111-0000-4000-8000-000000000004"
		long := time.Now().Add(time.Hour).Truncate(time.Millisecond)
		if err := setter.Pause(ctx, tenant, long); err != nil {
			t.Fatalf("Pause: %v", err)
		}
		if err := other.Pause(ctx, tenant, time.Now().Add(time.Second)); err != nil {
			t.Fatalf("shorter Pause: %v", err)
		}
		for _, l := range f.limiters {
			if got, ok := l.PausedUntil(tenant); !ok || !got.Equal(long) {
				t.Errorf("PausedUntil = %v, %v; want %v, true", got, ok, long)
			}
		}
		entry, err := f.kv.Get(ctx, pauseKey(keyToken(testApp), keyToken(tenant)))
		if err != nil {
			t.Fatalf("get pause key: %v", err)
		}
		if v, err := decodePause(entry.Value()); err != nil || !v.Until.Equal(long) {
			t.Errorf("stored pause = %v, %v; want until %v", v.Until, err, long)
		}
	})

	t.Run("deleting the key lifts the pause", func(t *testing.T) {
		tenant := "11111111-0000-4000-8000-000000000005"
		if err := setter.Pause(ctx, tenant, time.Now().Add(time.Hour)); err != nil {
			t.Fatalf("Pause: %v", err)
		}
		eventually(t, 2*time.Second, "the pause to arrive", func() bool {
			_, ok := other.PausedUntil(tenant)
			return ok
		})
		done := make(chan error, 1)
		go func() {
			_, err := other.Wait(waitCtx(t, 5*time.Second), tenant)
			done <- err
		}()
		if err := f.kv.Delete(ctx, pauseKey(keyToken(testApp), keyToken(tenant))); err != nil {
			t.Fatalf("delete pause key: %v", err)
		}
		if err := <-done; err != nil {
			t.Errorf("Wait after the pause was lifted: %v", err)
		}
		if _, ok := other.PausedUntil(tenant); ok {
			t.Error("PausedUntil still reports the lifted pause")
		}
	})

	t.Run("a new limiter starts with the pauses in force", func(t *testing.T) {
		tenant := "11111111-0000-4000-8000-000000000006"
		until := time.Now().Add(time.Hour).Truncate(time.Millisecond)
		if err := setter.Pause(ctx, tenant, until); err != nil {
			t.Fatalf("Pause: %v", err)
		}
		late := f.open(t, 9, Config{App: testApp, Rate: Rate{N: 100, Per: time.Second}})
		if got, ok := late.PausedUntil(tenant); !ok || !got.Equal(until) {
			t.Errorf("PausedUntil = %v, %v; want %v, true", got, ok, until)
		}
	})
}

// TestPauseConcurrent has several Limiters pause one tenant at once and
// checks that the latest time wins.
func TestPauseConcurrent(t *testing.T) {
	f := newFleet(t, 4, Config{App: testApp})
	base := time.Now().Add(time.Hour).Truncate(time.Millisecond)
	var wg sync.WaitGroup
	for i, l := range f.limiters {
		for j := range 5 {
			wg.Go(func() {
				until := base.Add(time.Duration(i*5+j) * time.Second)
				if err := l.Pause(t.Context(), tenantA, until); err != nil {
					t.Errorf("Pause: %v", err)
				}
			})
		}
	}
	wg.Wait()
	want := base.Add(19 * time.Second)
	for _, l := range f.limiters {
		eventually(t, 2*time.Second, "every limiter to see the latest pause", func() bool {
			got, ok := l.PausedUntil(tenantA)
			return ok && got.Equal(want)
		})
	}
}

// TestUnlimited checks that an unlimited Limiter never touches the window
// but still honours pauses.
func TestUnlimited(t *testing.T) {
	f := newFleet(t, 1, Config{App: testApp, Rate: Unlimited})
	l := f.limiters[0]
	ctx := t.Context()
	for range 1000 {
		if _, err := l.Wait(ctx, tenantA); err != nil {
			t.Fatalf("Wait: %v", err)
		}
	}
	if st := l.Stats(); st.KVOps != 0 || st.Waits != 1000 {
		t.Errorf("Stats = %+v, want 1000 waits and no KV operations", st)
	}
	until := time.Now().Add(200 * time.Millisecond)
	if err := l.Pause(ctx, tenantA, until); err != nil {
		t.Fatalf("Pause: %v", err)
	}
	if _, err := l.Wait(ctx, tenantA); err != nil {
		t.Fatalf("Wait: %v", err)
	}
	if now := time.Now(); now.Before(until) {
		t.Errorf("Wait returned %s before the pause ended", until.Sub(now))
	}
}

// waitCtx is a context for one blocking call in a test.
func waitCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}
