// Package timing holds the two ways this service waits on a clock while
// honouring a context: Sleep, for a pause in a goroutine that has nothing
// else to do, and Every, for work repeated in the background without a
// goroutine of its own between runs.
package timing

import (
	"context"
	"sync"
	"time"
)

// Sleep waits for d, or until ctx ends; it reports whether the whole of d
// passed.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// Every runs f every interval, starting one interval from now, until f
// returns false, ctx ends, or stop is called. No goroutine exists between
// runs: a job that is done before the first interval costs one timer. f
// receives a context that ends when stop is called or ctx ends. stop waits
// for a run in progress to return and may be called more than once; after
// it returns, f does not run again.
func Every(ctx context.Context, interval time.Duration, f func(context.Context) bool) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	var mu sync.Mutex // held while f runs, and while t is set or stopped
	var t *time.Timer
	mu.Lock()
	t = time.AfterFunc(interval, func() {
		mu.Lock()
		defer mu.Unlock()
		if ctx.Err() == nil && f(ctx) && ctx.Err() == nil {
			t.Reset(interval)
		}
	})
	mu.Unlock()
	return func() {
		cancel()
		mu.Lock()
		t.Stop()
		mu.Unlock()
	}
}
