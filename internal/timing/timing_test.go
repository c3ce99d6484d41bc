package timing

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

func TestSleep(t *testing.T) {
	if !Sleep(t.Context(), time.Millisecond) {
		t.Error("Sleep of 1ms on a live context reported it was cut short")
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	start := time.Now()
	if Sleep(ctx, time.Hour) {
		t.Error("Sleep on an ended context reported the full hour")
	}
	if time.Since(start) > time.Second {
		t.Error("Sleep did not return promptly when its context ended")
	}
}

func TestEveryRunsUntilFalse(t *testing.T) {
	var runs atomic.Int32
	done := make(chan struct{})
	stop := Every(t.Context(), time.Millisecond, func(context.Context) bool {
		if runs.Add(1) == 3 {
			close(done)
			return false
		}
		return true
	})
	defer stop()
	<-done
	stop()
	if n := runs.Load(); n != 3 {
		t.Errorf("f ran %d times, want 3: it must stop once it returns false", n)
	}
}

// stop waits for a run in progress, cancels its context, and nothing runs
// after it.
func TestEveryStopWaitsAndCancels(t *testing.T) {
	started := make(chan struct{})
	var after atomic.Bool
	var runs atomic.Int32
	stop := Every(t.Context(), time.Millisecond, func(ctx context.Context) bool {
		if runs.Add(1) > 1 {
			after.Store(true)
			return true
		}
		close(started)
		<-ctx.Done() // only stop ends this run
		return true
	})
	<-started
	stop()
	stop() // a second stop is harmless
	if after.Load() {
		t.Error("f ran again after stop returned")
	}
}

func TestEveryEndsWithItsContext(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	var runs atomic.Int32
	stop := Every(ctx, time.Millisecond, func(context.Context) bool {
		if runs.Add(1) == 2 {
			cancel()
		}
		return true
	})
	<-ctx.Done()
	stop() // waits for the run that cancelled
	if n := runs.Load(); n != 2 {
		t.Errorf("f ran %d times, want 2: none after its context ended", n)
	}
}
