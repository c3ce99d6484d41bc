package ratelimit

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/recoverpasscode/recoverpasscode/clock"
)

// TestSkewedClocksKeepTheBound runs three Limiters whose local clocks are
// 2 s ahead, 2 s behind and right, with more demand than the rate allows.
// Each corrects its clock to the server's, so no window (by the real
// clock) holds more than N starts. Read raw, the fast one would see the
// others' stamps as long gone and the slow one would write stamps the
// others drop at once: both grant permits the window does not have.
func TestSkewedClocksKeepTheBound(t *testing.T) {
	rate := Rate{N: 10, Per: 500 * time.Millisecond}
	f := newFleet(t, 0, Config{App: testApp, Rate: rate})
	for i, skew := range []time.Duration{2 * time.Second, -2 * time.Second, 0} {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		kv, err := connect(t, f.url).KeyValue(ctx, testBucket)
		if err != nil {
			t.Fatal(err)
		}
		clk, err := clock.New(clock.Config{KV: kv, Key: fmt.Sprintf("clock.skewed-%d", i), Local: func() time.Time { return time.Now().Add(skew) }})
		if err != nil {
			t.Fatal(err)
		}
		l, err := New(ctx, kv, Config{App: testApp, Rate: rate, Owner: fmt.Sprintf("skewed-%d", i), Clock: clk})
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = l.Close() })
		f.limiters = append(f.limiters, l)
	}
	res := runLoad(f.limiters, tenantA, 4, 6*rate.Per)
	for _, err := range res.errs {
		t.Errorf("Wait: %v", err)
	}
	busiest := maxInWindow(res.starts, rate.Per)
	t.Logf("%d calls, busiest window %d/%d, steady %.0f%%", len(res.starts), busiest, rate.N, 100*steadyShare(res.starts, rate.N, rate.Per))
	if busiest > rate.N {
		t.Errorf("%d calls started within one %s window, want at most %d", busiest, rate.Per, rate.N)
	}
	if len(res.starts) < 4*rate.N {
		t.Errorf("only %d calls in %s: the skewed limiters hold back", len(res.starts), 6*rate.Per)
	}
}
