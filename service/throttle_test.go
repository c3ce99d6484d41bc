package service_test

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/recoverpasscode/recoverpasscode/graph/graphsim"
	"github.com/recoverpasscode/recoverpasscode/internal/testsystem"
	"github.com/recoverpasscode/recoverpasscode/wire"
)

func TestThrottledTenantIsPausedForEveryWorkerAndOthersFlow(t *testing.T) {
	// Not parallel: it allows calls 250 ms of grace to reach Graph after the
	// 429, which another test's load on the CPUs could stretch.
	sys := testsystem.Start(t, graphsim.Config{})
	sys.StartWorker(sys.Config("w1"))
	sys.StartWorker(sys.Config("w2"))
	// Warm both workers' tokens so the throttle hits the batch, not the first call.
	sys.Submit("ticketing", wire.Job{ID: "warm-a", ManagedDeviceID: testsystem.DeviceN(900)})
	sys.Submit("ticketing", wire.Job{ID: "warm-b", ManagedDeviceID: testsystem.DeviceN(901), TenantID: testsystem.OtherTenant})
	sys.Results("", 2, 20*time.Second)

	sys.GS.ThrottleTenant(testsystem.Tenant, "3", 1)
	for i := range 20 {
		sys.Submit("ticketing", wire.Job{ID: fmt.Sprintf("a-%02d", i), ManagedDeviceID: testsystem.DeviceN(i)})
		sys.Submit("ticketing", wire.Job{ID: fmt.Sprintf("b-%02d", i), ManagedDeviceID: testsystem.DeviceN(100 + i), TenantID: testsystem.OtherTenant})
	}
	results := sys.Results("", 42, 60*time.Second)
	for id, r := range results {
		if r.Status != wire.Succeeded {
			t.Errorf("%s: %s %s", id, r.Status, r.Error)
		}
	}
	calls := sys.GS.Calls()
	var throttledAt time.Time
	for _, c := range calls {
		if c.Status == 429 {
			throttledAt = c.Time
			break
		}
	}
	if throttledAt.IsZero() {
		t.Fatal("no call was throttled")
	}
	// Calls that passed the limiter before the pause reached their worker
	// (a KV write and a watch event: milliseconds) cannot be recalled;
	// after that grace, tenant A must be silent until Retry-After ends.
	const grace = 250 * time.Millisecond
	quiet := throttledAt.Add(3 * time.Second)
	othersDuringPause, inGrace := 0, 0
	for _, c := range calls {
		if !c.Time.After(throttledAt) || !c.Time.Before(quiet) {
			continue
		}
		switch since := c.Time.Sub(throttledAt); {
		case c.TenantID == testsystem.OtherTenant:
			othersDuringPause++
		case since < grace:
			inGrace++
		default:
			t.Errorf("tenant A called %s after its 429, inside the 3 s Retry-After", since)
		}
	}
	t.Logf("tenant A calls already past the limiter when the pause was set: %d", inGrace)
	if othersDuringPause == 0 {
		t.Error("tenant B made no calls while tenant A was paused")
	}
	t.Logf("tenant B made %d calls during tenant A's pause", othersDuringPause)
}

func TestThrottleWithoutRetryAfterBacksOffExponentially(t *testing.T) {
	t.Parallel()
	sys := testsystem.Start(t, graphsim.Config{})
	sys.StartWorker(sys.Config("w1"))
	sys.Submit("ticketing", wire.Job{ID: "warm", ManagedDeviceID: testsystem.DeviceN(900)})
	sys.Results("", 1, 20*time.Second)
	sys.GS.ThrottleTenant(testsystem.Tenant, "", 3)
	sys.Submit("ticketing", wire.Job{ID: "patient", ManagedDeviceID: testsystem.Device})
	r := sys.Results("recoverpasscode.results.ticketing.patient", 1, 30*time.Second)["patient"]
	if r.Status != wire.Succeeded || r.Attempts != 4 {
		t.Fatalf("result %+v", r)
	}
	var times []time.Time
	for _, c := range sys.GS.Calls() {
		if c.DeviceID == testsystem.Device {
			times = append(times, c.Time)
		}
	}
	if len(times) != 4 {
		t.Fatalf("%d calls", len(times))
	}
	gaps := []time.Duration{times[1].Sub(times[0]), times[2].Sub(times[1]), times[3].Sub(times[2])}
	t.Logf("gaps between attempts: %v", gaps)
	// 500ms doubling with ±50% jitter: [0.25,0.75], [0.5,1.5], [1,3] seconds.
	if gaps[0] < 250*time.Millisecond || gaps[2] <= gaps[0] || gaps[2] < time.Second {
		t.Errorf("gaps %v do not grow exponentially from 500ms", gaps)
	}
}

func TestStormOf503sAndTimeoutsStillSucceedsOnce(t *testing.T) {
	// It waits on timers (attempt timeouts, backoff, the rate window), not
	// the CPU, so it runs beside the package's other waiting tests.
	t.Parallel()
	sys := testsystem.Start(t, graphsim.Config{Limit: -1})
	var mu sync.Mutex
	rnd := rand.New(rand.NewPCG(7, 7))
	sys.GS.SetFaultFunc(func(graphsim.Call) *graphsim.Fault {
		mu.Lock()
		defer mu.Unlock()
		switch p := rnd.Float64(); {
		case p < 0.10:
			return &graphsim.Fault{Status: 503}
		case p < 0.15:
			return &graphsim.Fault{Hang: true}
		}
		return nil
	})
	for _, name := range []string{"w1", "w2"} {
		cfg := sys.Config(name)
		cfg.AttemptTimeout = time.Second
		cfg.MaxAttempts = 8
		cfg.Concurrency = 32
		sys.StartWorker(cfg)
	}
	const n = 200
	for i := range n {
		sys.Submit("batch", wire.Job{ID: fmt.Sprintf("s-%03d", i), ManagedDeviceID: testsystem.DeviceN(i)})
	}
	results := sys.Results("", n, 120*time.Second)
	attempts, retried, uncertain := 0, 0, 0
	for i := range n {
		r := results[fmt.Sprintf("s-%03d", i)]
		if r.Status != wire.Succeeded {
			t.Errorf("s-%03d: %s %s", i, r.Status, r.Error)
		}
		if p := sys.GS.Performed(testsystem.DeviceN(i)); p != 1 {
			t.Errorf("s-%03d: performed %d times", i, p)
		}
		attempts += r.Attempts
		if r.Attempts > 1 {
			retried++
		}
		if r.Uncertain {
			uncertain++
		}
	}
	faults := 0
	for _, c := range sys.GS.Calls() {
		if c.Injected {
			faults++
		}
	}
	t.Logf("%d jobs: %d graph attempts, %d injected faults, %d jobs retried, %d marked uncertain (timed out)", n, attempts, faults, retried, uncertain)
}

// A broken secret stops the worker from taking jobs; none fails; fixing the
// secret resumes processing without a restart.
func TestBrokenSecretKeepsJobsQueuedUntilFixed(t *testing.T) {
	t.Parallel()
	sys := testsystem.Start(t, graphsim.Config{})
	cfg := sys.Config("w1")
	cfg.Credential.ClientSecret = "rotated-by-someone-else"
	cfg.HTTPAddr = testsystem.FreeAddr(t)
	sys.StartWorker(cfg)
	for i := range 5 {
		sys.Submit("ticketing", wire.Job{ID: fmt.Sprintf("q-%d", i), ManagedDeviceID: testsystem.DeviceN(i)})
	}
	status, body := testsystem.WaitReadyz(t, cfg.HTTPAddr, 503, 20*time.Second)
	if !strings.Contains(body, "credentials") {
		t.Fatalf("/readyz %d does not explain: %s", status, body)
	}
	if n := sys.PendingJobs(); n != 5 {
		t.Fatalf("%d jobs queued, want 5 (none taken while credentials are broken)", n)
	}
	if n := len(sys.GS.Calls()); n != 0 {
		t.Fatalf("graph called %d times without a token", n)
	}
	sys.GS.AddApp(testsystem.Client, "rotated-by-someone-else") // the operator fixes the registration
	results := sys.Results("", 5, 60*time.Second)
	for id, r := range results {
		if r.Status != wire.Succeeded {
			t.Errorf("%s: %s", id, r.Status)
		}
	}
	testsystem.WaitReadyz(t, cfg.HTTPAddr, 200, 10*time.Second)
}

// A secret revoked while running: Graph's 401 leads to one refresh, which
// fails; the job goes back to the queue and the worker waits for a token.
func TestSecretRevokedWhileRunningHandsTheJobBack(t *testing.T) {
	t.Parallel()
	sys := testsystem.Start(t, graphsim.Config{})
	cfg := sys.Config("w1")
	cfg.HTTPAddr = testsystem.FreeAddr(t)
	logs := sys.StartWorker(cfg)
	sys.Submit("ticketing", wire.Job{ID: "before", ManagedDeviceID: testsystem.DeviceN(1)})
	sys.Results("recoverpasscode.results.ticketing.before", 1, 20*time.Second)

	sys.GS.AddApp(testsystem.Client, "new-secret-not-yet-deployed")
	sys.GS.ExpireTokens()
	sys.Submit("ticketing", wire.Job{ID: "during", ManagedDeviceID: testsystem.DeviceN(2)})
	testsystem.WaitReadyz(t, cfg.HTTPAddr, 503, 20*time.Second)
	sys.GS.AddApp(testsystem.Client, testsystem.Secret) // rolled back
	r := sys.Results("recoverpasscode.results.ticketing.during", 1, 60*time.Second)["during"]
	if r.Status != wire.Succeeded {
		t.Fatalf("result %+v", r)
	}
	for _, secret := range []string{testsystem.Secret, "new-secret-not-yet-deployed"} {
		if strings.Contains(logs.String(), secret) {
			t.Fatal("a secret reached the log")
		}
	}
}
