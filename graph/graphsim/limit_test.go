package graphsim_test

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/confidential"

	"github.com/recoverpasscode/recoverpasscode/graph/graphsim"
)

// TestSlidingWindowLimit scales Intune's 200 per 20 s down to 5 per 200 ms.
func TestSlidingWindowLimit(t *testing.T) {
	const window = 200 * time.Millisecond
	s := newServer(t, graphsim.Config{Limit: 5, Window: window})
	token := appToken(t, s)
	client := s.Client()

	for i := range 5 {
		if resp, _ := mustDo(t, client, s, request{path: managedDevicePath(deviceID), token: token}); resp.StatusCode != http.StatusNoContent {
			t.Fatalf("call %d: %d, want 204", i, resp.StatusCode)
		}
	}
	resp, body := mustDo(t, client, s, request{path: managedDevicePath(deviceID), token: token})
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != "1" {
		t.Fatalf("sixth call: %d Retry-After %q %s, want 429 with Retry-After 1 (a fraction rounds up)", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	calls := s.Calls()
	if c := calls[5]; !c.LimitRejected || c.Injected || c.Performed || c.ErrorCode != "TooManyRequests" {
		t.Errorf("sixth call = %+v, want LimitRejected", c)
	}

	// The first slot frees exactly one window after the first call.
	time.Sleep(time.Until(calls[0].Time.Add(window)))
	if resp, _ := mustDo(t, client, s, request{path: managedDevicePath(deviceID), token: token}); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("after the first call left the window: %d, want 204", resp.StatusCode)
	}
	if got := s.Performed(deviceID); got != 6 {
		t.Errorf("Performed = %d, want 6", got)
	}
}

// TestTenantLimit shows the per-tenant limit across apps.
func TestTenantLimit(t *testing.T) {
	s := newServer(t, graphsim.Config{Limit: 3, TenantLimit: 4, Window: time.Hour})
	const otherApp, otherSecret = "33333333-4444-4555-8666-777777777777", "other"
	s.AddApp(otherApp, otherSecret)
	cred, err := confidential.NewCredFromSecret(otherSecret)
	if err != nil {
		t.Fatal(err)
	}
	res, err := confidentialClient(t, s, tenantID, otherApp, cred).AcquireTokenByCredential(testContext(t), []string{graphScope})
	if err != nil {
		t.Fatal(err)
	}
	tokens := []string{appToken(t, s), res.AccessToken}
	client := s.Client()

	want := []struct {
		app    int
		status int
	}{{0, 204}, {0, 204}, {0, 204}, {0, 429}, {1, 204}, {1, 429}}
	for i, w := range want {
		resp, _ := mustDo(t, client, s, request{path: managedDevicePath(deviceID), token: tokens[w.app]})
		if resp.StatusCode != w.status {
			t.Errorf("call %d by app %d: %d, want %d", i, w.app, resp.StatusCode, w.status)
		}
	}
}

// TestLimitUnderLoad hammers the limiter from many goroutines and checks
// that no window ever admitted more than the limit, and that MaxInWindow
// agrees with a brute-force count.
func TestLimitUnderLoad(t *testing.T) {
	const limit, window = 5, 100 * time.Millisecond
	s := newServer(t, graphsim.Config{Limit: limit, Window: window})
	token := appToken(t, s)
	client := s.Client()
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 20 {
				if _, _, err := do(t, testContext(t), client, s, request{path: managedDevicePath(deviceID), token: token}); err != nil {
					t.Errorf("call: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()

	calls := s.Calls()
	var admitted, all []time.Time
	rejected := 0
	for i, c := range calls {
		if i > 0 && c.Time.Before(calls[i-1].Time) {
			t.Fatalf("calls out of Time order at %d", i)
		}
		all = append(all, c.Time)
		if c.Performed {
			admitted = append(admitted, c.Time)
		}
		if c.LimitRejected {
			rejected++
		}
	}
	if got := bruteMaxInWindow(admitted, window); got > limit {
		t.Errorf("%d calls admitted within one window, limit %d", got, limit)
	}
	if rejected == 0 {
		t.Errorf("no call of %d was limited", len(calls))
	}
	for _, w := range []time.Duration{time.Nanosecond, window / 3, window, 3 * window, time.Hour} {
		if got, want := s.MaxInWindow(tenantID, appID, w), bruteMaxInWindow(all, w); got != want {
			t.Errorf("MaxInWindow(%s) = %d, want %d", w, got, want)
		}
	}
	if got := s.MaxInWindow("00000000-0000-4000-8000-000000000000", appID, time.Hour); got != 0 {
		t.Errorf("MaxInWindow for another tenant = %d, want 0", got)
	}
	t.Logf("%d calls, %d limited, max %d per window, %d admitted per window", len(calls), rejected, s.MaxInWindow(tenantID, appID, window), bruteMaxInWindow(admitted, window))
}

// bruteMaxInWindow counts, for every time, the times in [t, t+w).
func bruteMaxInWindow(times []time.Time, w time.Duration) int {
	best := 0
	for _, start := range times {
		n := 0
		for _, t := range times {
			if !t.Before(start) && t.Sub(start) < w {
				n++
			}
		}
		best = max(best, n)
	}
	return best
}

// TestWaitCalls waits for calls without polling and returns on cancel and
// Close.
func TestWaitCalls(t *testing.T) {
	s := newServer(t, graphsim.Config{})
	token := appToken(t, s)
	client := s.Client()

	done := make(chan error, 1)
	go func() { done <- s.WaitCalls(testContext(t), 3) }()
	for range 3 {
		mustDo(t, client, s, request{path: managedDevicePath(deviceID), token: token})
	}
	if err := <-done; err != nil {
		t.Fatalf("WaitCalls(3): %v", err)
	}

	ctx, cancel := context.WithCancel(testContext(t))
	cancel()
	if err := s.WaitCalls(ctx, 4); !errors.Is(err, context.Canceled) {
		t.Errorf("WaitCalls with a cancelled context = %v, want context.Canceled", err)
	}
	go func() { done <- s.WaitCalls(testContext(t), 4) }()
	s.Close()
	if err := <-done; !errors.Is(err, graphsim.ErrClosed) {
		t.Errorf("WaitCalls across Close = %v, want ErrClosed", err)
	}
}

// TestSetLimit lowers and raises the per-app limit while calls are in the
// window.
func TestSetLimit(t *testing.T) {
	s := newServer(t, graphsim.Config{Limit: 4, Window: time.Hour})
	token := appToken(t, s)
	client := s.Client()
	call := func() int {
		resp, _ := mustDo(t, client, s, request{path: managedDevicePath(deviceID), token: token})
		return resp.StatusCode
	}
	for range 2 {
		if got := call(); got != http.StatusNoContent {
			t.Fatalf("call under the limit: %d", got)
		}
	}
	s.SetLimit(2)
	if got := call(); got != http.StatusTooManyRequests {
		t.Errorf("third call after lowering the limit to 2: %d, want 429", got)
	}
	s.SetLimit(3)
	if got := call(); got != http.StatusNoContent {
		t.Errorf("third call after raising the limit to 3: %d, want 204", got)
	}
}
