package graphsim

import (
	"math"
	"time"
)

// limiter enforces Intune's sliding-window limits: at most perApp admitted
// calls per (tenant, app) and perTenant per tenant in any window. A call is
// inside the window ending at now when now-t < window, the same half-open
// windows MaxInWindow measures. Rejected calls do not use a slot. Guarded by
// Server.mu.
type limiter struct {
	perApp    int // negative: no limit
	perTenant int // negative: no limit
	window    time.Duration
	apps      map[appKey][]time.Time // admitted call times, ascending
	tenants   map[string][]time.Time
}

type appKey struct{ tenantID, appID string }

func newLimiter(perApp, perTenant int, window time.Duration) *limiter {
	return &limiter{
		perApp:    perApp,
		perTenant: perTenant,
		window:    window,
		apps:      map[appKey][]time.Time{},
		tenants:   map[string][]time.Time{},
	}
}

// admitLocked admits a call of app in tenant at now, or reports how long
// until the first slot frees.
func (l *limiter) admitLocked(tenantID, appID string, now time.Time) (bool, time.Duration) {
	key := appKey{tenantID, appID}
	appLog := l.prune(l.apps[key], now)
	tenantLog := l.prune(l.tenants[tenantID], now)
	l.apps[key], l.tenants[tenantID] = appLog, tenantLog

	wait := max(l.waitFor(appLog, l.perApp, now), l.waitFor(tenantLog, l.perTenant, now))
	if wait > 0 {
		return false, wait
	}
	l.apps[key] = append(appLog, now)
	l.tenants[tenantID] = append(tenantLog, now)
	return true, 0
}

// prune drops the times that have left the window ending at now.
func (l *limiter) prune(log []time.Time, now time.Time) []time.Time {
	i := 0
	for i < len(log) && now.Sub(log[i]) >= l.window {
		i++
	}
	return log[i:]
}

// waitFor is how long until log holds fewer than limit times, 0 if it does.
func (l *limiter) waitFor(log []time.Time, limit int, now time.Time) time.Duration {
	if limit < 0 || len(log) < limit {
		return 0
	}
	if limit == 0 {
		return l.window
	}
	return log[len(log)-limit].Add(l.window).Sub(now)
}

// retryAfterSeconds renders a wait as a Retry-After value: whole seconds,
// rounded up, at least 1, as HTTP allows no fractions.
func retryAfterSeconds(d time.Duration) int64 {
	return max(1, int64(math.Ceil(d.Seconds())))
}
