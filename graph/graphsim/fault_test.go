package graphsim_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"net/http"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/recoverpasscode/recoverpasscode/graph/graphsim"
)

// TestFailNext queues faults and checks they are used in order, then normal
// answers resume.
func TestFailNext(t *testing.T) {
	s := newServer(t, graphsim.Config{})
	token := appToken(t, s)
	client := s.Client()
	s.FailNext(2, graphsim.Fault{Status: http.StatusServiceUnavailable, RetryAfter: "3"})
	s.FailNext(1, graphsim.Fault{Status: http.StatusGatewayTimeout, PerformBeforeFailing: true})
	s.FailNext(1, graphsim.Fault{Status: http.StatusForbidden, Code: "Authorization_RequestDenied"})

	want := []struct {
		status     int
		code       string
		retryAfter string
		performed  bool
	}{
		{503, "ServiceUnavailable", "3", false},
		{503, "ServiceUnavailable", "3", false},
		{504, "GatewayTimeout", "", true},
		{403, "Authorization_RequestDenied", "", false},
		{204, "", "", true},
	}
	for i, w := range want {
		resp, _ := mustDo(t, client, s, request{path: managedDevicePath(deviceID), token: token})
		if resp.StatusCode != w.status || resp.Header.Get("Retry-After") != w.retryAfter {
			t.Errorf("call %d: %d Retry-After %q, want %d %q", i, resp.StatusCode, resp.Header.Get("Retry-After"), w.status, w.retryAfter)
		}
		c := s.Calls()[i]
		if c.Status != w.status || c.ErrorCode != w.code || c.Performed != w.performed || c.Injected != (i < 4) {
			t.Errorf("call %d = %+v, want status %d code %q performed %t", i, c, w.status, w.code, w.performed)
		}
	}
	if got := s.Performed(deviceID); got != 2 {
		t.Errorf("Performed = %d, want 2 (the 504 after performing and the 204)", got)
	}
}

// TestThrottleTenant checks injected 429s with and without Retry-After, for
// one tenant only.
func TestThrottleTenant(t *testing.T) {
	s := newServer(t, graphsim.Config{})
	const otherTenant = "22222222-3333-4444-8555-666666666666"
	s.AddTenant(otherTenant)
	token := appToken(t, s)
	client := s.Client()

	s.ThrottleTenant(otherTenant, "1", 5)
	if resp, _ := mustDo(t, client, s, request{path: managedDevicePath(deviceID), token: token}); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("another tenant's throttle applied here: %d", resp.StatusCode)
	}

	s.ThrottleTenant(tenantID, "7", 1)
	resp, body := mustDo(t, client, s, request{path: managedDevicePath(deviceID), token: token})
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != "7" {
		t.Fatalf("answer = %d Retry-After %q %s, want 429 with Retry-After 7", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	if c := s.Calls()[1]; c.LimitRejected || !c.Injected || c.ErrorCode != "TooManyRequests" {
		t.Errorf("call = %+v, want an injected TooManyRequests, not LimitRejected", c)
	}
	s.ThrottleTenant(tenantID, "", 1)
	resp, _ = mustDo(t, client, s, request{path: managedDevicePath(deviceID), token: token})
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Values("Retry-After") != nil {
		t.Fatalf("answer = %d Retry-After %q, want 429 without Retry-After", resp.StatusCode, resp.Header.Values("Retry-After"))
	}
	if resp, _ := mustDo(t, client, s, request{path: managedDevicePath(deviceID), token: token}); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("after the throttle: %d, want 204", resp.StatusCode)
	}
}

// TestFaultFunc injects seeded random 503s from many goroutines and checks
// every call is accounted for.
func TestFaultFunc(t *testing.T) {
	s := newServer(t, graphsim.Config{})
	token := appToken(t, s)
	client := s.Client()
	var mu sync.Mutex
	rng := rand.New(rand.NewPCG(1, 2))
	s.SetFaultFunc(func(c graphsim.Call) *graphsim.Fault {
		mu.Lock()
		defer mu.Unlock()
		if c.TenantID == tenantID && rng.IntN(10) == 0 {
			return &graphsim.Fault{Status: http.StatusServiceUnavailable}
		}
		return nil
	})

	const n = 200
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range n / 8 {
				if _, _, err := do(t, testContext(t), client, s, request{path: managedDevicePath(deviceID), token: token}); err != nil {
					t.Errorf("call: %v", err)
				}
			}
		})
	}
	wg.Wait()
	var failed, ok int
	for _, c := range s.Calls() {
		switch c.Status {
		case http.StatusServiceUnavailable:
			failed++
		case http.StatusNoContent:
			ok++
		}
	}
	if failed+ok != n || failed == 0 || failed > n/4 || s.Performed(deviceID) != ok {
		t.Errorf("%d failed, %d succeeded, %d performed of %d: want about 10%% failures and every success performed", failed, ok, s.Performed(deviceID), n)
	}
	s.SetFaultFunc(nil)
	if resp, _ := mustDo(t, client, s, request{path: managedDevicePath(deviceID), token: token}); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("without the fault function: %d", resp.StatusCode)
	}
}

// TestHang holds calls until the client gives up, with and without the
// action having run, and shows Close releasing a held call.
func TestHang(t *testing.T) {
	for _, perform := range []bool{false, true} {
		t.Run(map[bool]string{false: "before acting", true: "after acting"}[perform], func(t *testing.T) {
			s := newServer(t, graphsim.Config{})
			token := appToken(t, s)
			s.FailNext(1, graphsim.Fault{Hang: true, PerformBeforeFailing: perform})
			client := s.Client()
			client.Timeout = 200 * time.Millisecond
			_, _, err := do(t, testContext(t), client, s, request{path: managedDevicePath(deviceID), token: token})
			if err == nil {
				t.Fatal("a hung call got an answer")
			}
			if c := s.Calls()[0]; !c.Hung || c.Status != 0 || c.Performed != perform {
				t.Errorf("call = %+v, want hung, no status, performed %t", c, perform)
			}
			if got := s.Performed(deviceID); got != map[bool]int{false: 0, true: 1}[perform] {
				t.Errorf("Performed = %d", got)
			}
		})
	}

	t.Run("released by Close", func(t *testing.T) {
		s := newServer(t, graphsim.Config{})
		token := appToken(t, s)
		s.FailNext(1, graphsim.Fault{Hang: true})
		errc := make(chan error, 1)
		go func() {
			_, _, err := do(t, testContext(t), s.Client(), s, request{path: managedDevicePath(deviceID), token: token})
			errc <- err
		}()
		if err := s.WaitCalls(testContext(t), 1); err != nil {
			t.Fatal(err)
		}
		s.Close()
		if err := <-errc; err == nil {
			t.Error("a hung call got an answer after Close")
		}
	})
}

// TestReset closes the connection without an answer.
func TestReset(t *testing.T) {
	s := newServer(t, graphsim.Config{})
	token := appToken(t, s)
	client := s.Client()
	s.FailNext(1, graphsim.Fault{Reset: true, PerformBeforeFailing: true})
	_, _, err := do(t, testContext(t), client, s, request{path: managedDevicePath(deviceID), token: token})
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("error = %v, want a connection reset", err)
	}
	if c := s.Calls()[0]; !c.Reset || c.Status != 0 || !c.Performed {
		t.Errorf("call = %+v, want reset after performing", c)
	}
	if resp, _ := mustDo(t, client, s, request{path: managedDevicePath(deviceID), token: token}); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("the next call: %d, want 204 on a new connection", resp.StatusCode)
	}
}

// TestLatencyTimeout shows a client that gives up during the latency leaving
// the action performed: the outcome it sees is unknown.
func TestLatencyTimeout(t *testing.T) {
	s := newServer(t, graphsim.Config{Latency: time.Hour})
	token := appToken(t, s)
	ctx, cancel := context.WithCancel(testContext(t))
	errc := make(chan error, 1)
	go func() {
		_, _, err := do(t, ctx, s.Client(), s, request{path: managedDevicePath(deviceID), token: token})
		errc <- err
	}()
	if err := s.WaitCalls(testContext(t), 1); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Errorf("error = %v, want context.Canceled", err)
	}
	if got := s.Performed(deviceID); got != 1 {
		t.Errorf("Performed = %d, want 1", got)
	}
	s.SetLatency(0)
	if resp, _ := mustDo(t, s.Client(), s, request{path: managedDevicePath(deviceID), token: token}); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("without latency: %d", resp.StatusCode)
	}
}
