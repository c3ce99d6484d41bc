package ratelimit

import (
	"context"
	"testing"
	"time"
)

// TestStatusAndOperatorPause: Status reports a tenant's calls in the
// window and the full learned rate; an operator's PauseTenant stops the
// fleet's Limiters for it and shows in Status naming the operator, and
// ResumeTenant lets calls go again at once.
func TestStatusAndOperatorPause(t *testing.T) {
	f := newFleet(t, 1, Config{App: testApp, Rate: Rate{N: 10, Per: 2 * time.Second}})
	l := f.limiters[0]
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for range 3 {
		if _, err := l.Wait(ctx, tenantA); err != nil {
			t.Fatal(err)
		}
	}
	st, err := Status(ctx, f.kv, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if len(st) != 1 || st[0].Tenant != tenantA || st[0].App != testApp || st[0].InWindow < 3 || st[0].Learned != 10 || !st[0].PausedUntil.IsZero() {
		t.Fatalf("status %+v", st)
	}

	if err := PauseTenant(ctx, f.kv, testApp, tenantA, time.Now().Add(time.Hour), "operator someone"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the Limiter sees the pause", func() bool { _, paused := l.PausedUntil(tenantA); return paused })
	st, err = Status(ctx, f.kv, time.Now())
	if err != nil || st[0].PausedUntil.IsZero() || st[0].PausedBy != "operator someone" {
		t.Fatalf("status after a pause: %+v %v", st, err)
	}
	waitCtx, stop := context.WithTimeout(ctx, 200*time.Millisecond)
	_, err = l.Wait(waitCtx, tenantA)
	stop()
	if err == nil {
		t.Fatal("a paused tenant got a permit")
	}

	if err := ResumeTenant(ctx, f.kv, testApp, tenantA); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Wait(ctx, tenantA); err != nil {
		t.Fatalf("after resume: %v", err)
	}
	st, _ = Status(ctx, f.kv, time.Now())
	if !st[0].PausedUntil.IsZero() {
		t.Fatalf("still paused after resume: %+v", st[0])
	}
}
