package ratelimit

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Rate is a limit of N calls started in any window of length Per. A Rate
// with N == 0 is unlimited: Wait then only honours pauses.
//
// The zero Rate{} is unlimited as a value, but Config reads a zero Rate as
// "not set" and uses DefaultRate, so that forgetting to configure a limit
// yields Intune's limit rather than none. Use Unlimited to configure no limit.
type Rate struct {
	// N is the number of calls that may start in any window. Zero means
	// unlimited.
	N int
	// Per is the length of the window.
	Per time.Duration
}

var (
	// DefaultRate is Intune's limit for managedDevice POST requests: 200 per
	// 20 seconds per app per tenant.
	DefaultRate = Rate{N: 200, Per: 20 * time.Second}

	// Unlimited is the rate that never blocks. Its Per is set only to tell it
	// apart from the zero Rate, which Config replaces with DefaultRate.
	Unlimited = Rate{N: 0, Per: time.Second}
)

// Unlimited reports whether r places no limit on calls.
func (r Rate) Unlimited() bool { return r.N == 0 }

// String formats r the way ParseRate reads it: "200/20s", "5/1m" or
// "unlimited".
func (r Rate) String() string {
	if r.Unlimited() {
		return "unlimited"
	}
	return strconv.Itoa(r.N) + "/" + formatDuration(r.Per)
}

// validate reports a rate that cannot be enforced.
func (r Rate) validate() error {
	switch {
	case r.N < 0:
		return fmt.Errorf("negative number of calls %d", r.N)
	case r.N > 0 && r.Per <= 0:
		return fmt.Errorf("window %s must be positive", r.Per)
	}
	return nil
}

// ParseRate reads a rate written as "N/duration", such as "200/20s",
// "20/2s" or "5/1m"; a bare unit counts as one ("5/m" is "5/1m").
// "unlimited" and "0" (or any "0/duration") mean no limit. Surrounding
// spaces are ignored.
func ParseRate(s string) (Rate, error) {
	text := strings.TrimSpace(s)
	if text == "0" || strings.EqualFold(text, "unlimited") {
		return Unlimited, nil
	}
	count, window, ok := strings.Cut(text, "/")
	if !ok {
		return Rate{}, fmt.Errorf("ratelimit: parse rate %q: want N/duration such as 200/20s, or unlimited", s)
	}
	n, err := strconv.Atoi(strings.TrimSpace(count))
	if err != nil {
		return Rate{}, fmt.Errorf("ratelimit: parse rate %q: number of calls %q is not a whole number", s, count)
	}
	window = strings.TrimSpace(window)
	if window != "" && !strings.ContainsAny(window[:1], "0123456789.+-") {
		window = "1" + window
	}
	per, err := time.ParseDuration(window)
	if err != nil {
		return Rate{}, fmt.Errorf("ratelimit: parse rate %q: window %q is not a duration such as 20s or 1m", s, window)
	}
	r := Rate{N: n, Per: per}
	if n == 0 {
		if per <= 0 {
			r.Per = Unlimited.Per
		}
		return r, nil
	}
	if err := r.validate(); err != nil {
		return Rate{}, fmt.Errorf("ratelimit: parse rate %q: %w", s, err)
	}
	return r, nil
}

// formatDuration writes d without the zero units time.Duration.String
// leaves behind ("1m" rather than "1m0s").
func formatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
