package ratelimit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// TenantStatus is what the bucket holds for one (app, tenant), for people:
// the console's overview. Times are on the NATS server's clock.
type TenantStatus struct {
	// App and Tenant are the ids, lowercased as in the keys.
	App, Tenant string
	// Rate is the configured rate the fleet enforces (RECOVER_RATE_LIMIT),
	// from the window log or the learned budget; "" when neither says.
	Rate string
	// Learned is the calls per window the fleet allows itself (the whole
	// configured rate when it has never been throttled), Estimate what the
	// last cut estimated Graph accepted (-1: none), Cuts how often it was cut
	// and CutAt when last.
	Learned  float64
	Learning bool // a learned budget is stored (else Learned is the full rate)
	Estimate int
	Cuts     int
	CutAt    time.Time
	// InWindow counts the permits granted whose use may fall in the last
	// window: the current rate, in calls per window.
	InWindow int
	// PausedUntil is when the tenant's pause ends, zero when not paused;
	// PausedBy names who set it (a worker, or an operator).
	PausedUntil time.Time
	PausedBy    string
}

// Status reads every window log, learned budget and pause in the limits
// bucket kv and returns one entry per (app, tenant), sorted by tenant and
// app. now is the server's time, to count the permits in the window and
// to tell a pause in force from one that ended.
func Status(ctx context.Context, kv jetstream.KeyValue, now time.Time) ([]TenantStatus, error) {
	keys, err := kv.ListKeysFiltered(ctx, windowPrefix+">", budgetPrefix+">", pausePrefix+">")
	if err != nil {
		return nil, fmt.Errorf("ratelimit: status: %w", err)
	}
	byKey := map[string]*TenantStatus{}
	get := func(app, tenant string) *TenantStatus {
		k := app + "." + tenant
		if byKey[k] == nil {
			byKey[k] = &TenantStatus{App: tokenID(app), Tenant: tokenID(tenant), Estimate: -1}
		}
		return byKey[k]
	}
	for key := range keys.Keys() {
		kind, rest, _ := strings.Cut(key, ".")
		app, tenant, ok := strings.Cut(rest, ".")
		if !ok {
			continue
		}
		entry, err := kv.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("ratelimit: status: read %s: %w", key, err)
		}
		st := get(app, tenant)
		switch kind + "." {
		case windowPrefix:
			w, err := decodeWindow(entry.Value())
			if err != nil {
				continue
			}
			if st.Rate == "" {
				st.Rate = w.Rate
			}
			if r, err := ParseRate(w.Rate); err == nil {
				st.InWindow = permits(live(w.Grants, now, r.Per))
			}
		case budgetPrefix:
			b, err := decodeBudget(entry.Value())
			if err != nil {
				continue
			}
			st.Rate, st.Learned, st.Learning = b.Rate, b.Learned, true
			st.Estimate, st.Cuts, st.CutAt = b.Estimate, b.Cuts, b.CutAt
		case pausePrefix:
			p, err := decodePause(entry.Value())
			if err == nil && p.Until.After(now) {
				st.PausedUntil, st.PausedBy = p.Until, p.Owner
			}
		}
	}
	out := make([]TenantStatus, 0, len(byKey))
	for _, st := range byKey {
		if !st.Learning {
			if r, err := ParseRate(st.Rate); err == nil {
				st.Learned = float64(r.N)
			}
		}
		out = append(out, *st)
	}
	slices.SortFunc(out, func(a, b TenantStatus) int {
		if c := strings.Compare(a.Tenant, b.Tenant); c != 0 {
			return c
		}
		return strings.Compare(a.App, b.App)
	})
	return out, nil
}

// PauseTenant pauses (app, tenant) until the given time on the server's
// clock, for every Limiter of the fleet, as an operator does: owner names
// them. Like Limiter.Pause it never shortens a longer pause in force. A
// pause lasts at most the bucket's TTL.
func PauseTenant(ctx context.Context, kv jetstream.KeyValue, app, tenant string, until time.Time, owner string) error {
	key := pauseKey(keyToken(app), keyToken(tenant))
	for conflicts := 0; conflicts < 20; conflicts++ {
		var rev uint64
		entry, err := kv.Get(ctx, key)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
		case err != nil:
			return fmt.Errorf("ratelimit: pause: read %s: %w", key, err)
		default:
			rev = entry.Revision()
			if cur, err := decodePause(entry.Value()); err == nil && !until.After(cur.Until) {
				return nil
			}
		}
		value, err := json.Marshal(pauseValue{Until: until.UTC(), Owner: owner, At: time.Now().UTC()})
		if err != nil {
			return err
		}
		if rev == 0 {
			_, err = kv.Create(ctx, key, value)
		} else {
			_, err = kv.Update(ctx, key, value, rev)
		}
		if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			continue
		}
		if err != nil {
			return fmt.Errorf("ratelimit: pause: %w", err)
		}
		return nil
	}
	return errors.New("ratelimit: pause: the key kept changing; try again")
}

// ResumeTenant lifts the pause of (app, tenant) now: every Limiter sees the
// key deleted through its watch and lets calls start again.
func ResumeTenant(ctx context.Context, kv jetstream.KeyValue, app, tenant string) error {
	if err := kv.Delete(ctx, pauseKey(keyToken(app), keyToken(tenant))); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("ratelimit: resume: %w", err)
	}
	return nil
}
