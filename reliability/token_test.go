package reliability_test

import (
	"testing"
	"time"

	"github.com/recoverpasscode/recoverpasscode/devserver/devservertest"
	"github.com/recoverpasscode/recoverpasscode/graph/graphsim"
)

// tokenOutage is how long Entra ID's token endpoint fails in
// TestTokenEndpointDown.
const tokenOutage = 20 * time.Second

// TestTokenEndpointDown makes the token endpoint answer 503 for twenty
// seconds mid-batch. Tokens live one minute, which MSAL does not cache, so
// every call needs a new one and the workers cannot call Graph at all. No
// job may fail for it: they stay queued, and the workers resume when the
// endpoint is back.
func TestTokenEndpointDown(t *testing.T) {
	t.Parallel()
	ns := devservertest.Start(t)
	r := newRig(t, graphsim.Config{Latency: 50 * time.Millisecond, TokenLifetime: time.Minute}, ns.URL(), 1)
	for _, name := range []string{"token-a", "token-b"} {
		r.startWorker(r.config(name))
	}
	jobs, want := batch("token", 0, 300, 10)
	r.submit(t.Context(), "batch", jobs)
	r.waitCalls(t.Context(), 60)

	r.gs.SetTokenEndpointDown(true)
	before := len(r.gs.Calls())
	<-time.After(tokenOutage) // the fault itself
	during := len(r.gs.Calls()) - before
	r.gs.SetTokenEndpointDown(false)
	left := r.jobsLeft()
	if left == 0 {
		t.Errorf("the jobs stream is empty after the token outage: jobs were finished without Graph")
	}
	t.Logf("token endpoint down for %s: %d Graph calls meanwhile (already holding a token), %d jobs waiting in the queue", tokenOutage, during, left)
	r.settle(want, 120*time.Second)
}
