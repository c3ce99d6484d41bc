package job

import (
	"context"
	"time"

	"github.com/recoverpasscode/recoverpasscode/wire"
)

// Observer learns what the handler does, for metrics and the audit trail.
// Implementations must be safe for concurrent use and return quickly.
type Observer interface {
	// GraphCalled reports one Graph call (Kind wire.KindGraphCall).
	GraphCalled(ctx context.Context, e wire.AuditEvent, latency time.Duration)
	// RateLimited reports how long a call waited for the shared limit.
	RateLimited(tenantID string, waited time.Duration)
	// Paused reports a pause the handler set for a tenant after Graph
	// asked to slow down.
	Paused(tenantID string, until time.Time)
	// Held reports a job held because its source is over its budget, or
	// going on after a hold (Kind wire.KindHeld or wire.KindReleased).
	Held(ctx context.Context, e wire.AuditEvent)
}

type nopObserver struct{}

func (nopObserver) GraphCalled(context.Context, wire.AuditEvent, time.Duration) {}
func (nopObserver) RateLimited(string, time.Duration)                           {}
func (nopObserver) Paused(string, time.Time)                                    {}
func (nopObserver) Held(context.Context, wire.AuditEvent)                       {}
