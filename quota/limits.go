package quota

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/recoverpasscode/recoverpasscode/ratelimit"
	"github.com/recoverpasscode/recoverpasscode/wire"
)

// Limits is the budget of each source that has one; a source it does not
// name is unlimited. The zero value (nil) limits nothing.
type Limits map[string]ratelimit.Rate

// ParseLimits reads RECOVER_SOURCE_LIMITS: comma-separated source=rate
// pairs, each rate as ratelimit.ParseRate reads it, such as
// "automation=100/1h,ticketing=unlimited". The empty string limits
// nothing. Sources are subject tokens; naming one twice is an error.
func ParseLimits(s string) (Limits, error) {
	limits := Limits{}
	for _, pair := range strings.Split(s, ",") {
		pair = strings.TrimSpace(pair)
		if pair == "" {
			continue
		}
		source, text, ok := strings.Cut(pair, "=")
		source = strings.TrimSpace(source)
		if !ok {
			return nil, fmt.Errorf("quota: %q: want source=N/duration, such as automation=100/1h", pair)
		}
		if !wire.ValidToken(source) {
			return nil, fmt.Errorf("quota: %q: the source %q is not a subject token (letters, digits, '-', '_')", pair, source)
		}
		if _, dup := limits[source]; dup {
			return nil, fmt.Errorf("quota: source %q is named twice", source)
		}
		r, err := ratelimit.ParseRate(text)
		if err != nil {
			return nil, fmt.Errorf("quota: source %s: %w", source, err)
		}
		limits[source] = r
	}
	if len(limits) == 0 {
		return nil, nil
	}
	return limits, nil
}

// String writes l the way ParseLimits reads it, sources in order; "" for
// no limits.
func (l Limits) String() string {
	var parts []string
	for _, source := range slices.Sorted(maps.Keys(l)) {
		parts = append(parts, source+"="+l[source].String())
	}
	return strings.Join(parts, ",")
}

// Of is the budget of source, and whether it has one (an unlimited entry
// has none).
func (l Limits) Of(source string) (ratelimit.Rate, bool) {
	r, ok := l[source]
	return r, ok && !r.Unlimited()
}

// Limited lists the sources that have a budget, in order.
func (l Limits) Limited() []string {
	var out []string
	for _, source := range slices.Sorted(maps.Keys(l)) {
		if _, ok := l.Of(source); ok {
			out = append(out, source)
		}
	}
	return out
}
