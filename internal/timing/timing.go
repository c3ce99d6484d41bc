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
// returns false, ctx ends, or stop is called. Nothing but a timer exists
// between runs: a job that is done before the first interval costs one
// timer and no goroutine. f receives a context that ends when stop is
// called or ctx ends. stop waits for a run in progress to return and may be
// called more than once; after it returns, f does not run again.
func Every(ctx context.Context, interval time.Duration, f func(context.Context) bool) (stop func()) {
	e := &every{}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.t = time.AfterFunc(interval, func() {
		e.mu.Lock()
		if e.stopped || ctx.Err() != nil {
			e.mu.Unlock()
			return
		}
		// The run's own context exists only while it runs: most callers
		// stop before the first interval, and a cancellable child of a
		// busy parent context costs a lock on the parent.
		runCtx, cancel := context.WithCancel(ctx)
		e.cancel, e.running = cancel, make(chan struct{})
		e.mu.Unlock()

		again := f(runCtx)

		e.mu.Lock()
		cancel()
		close(e.running)
		e.cancel, e.running = nil, nil
		if again && !e.stopped && ctx.Err() == nil {
			e.t.Reset(interval)
		}
		e.mu.Unlock()
	})
	return e.stop
}

// every is the state of one Every.
type every struct {
	mu      sync.Mutex
	t       *time.Timer
	stopped bool
	// cancel and running belong to the run in progress, if any.
	cancel  context.CancelFunc
	running chan struct{}
}

func (e *every) stop() {
	e.mu.Lock()
	e.stopped = true
	e.t.Stop()
	cancel, running := e.cancel, e.running
	e.mu.Unlock()
	if cancel != nil {
		cancel()
		<-running
	}
}
