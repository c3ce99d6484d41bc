package graph_test

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/recoverpasscode/recoverpasscode/graph"
)

// FuzzParseRetryAfter feeds arbitrary header values, at arbitrary times,
// to ParseRetryAfter. It never panics; a value it cannot read reports no
// wait; a wait it reads is within [0, 1h]; surrounding whitespace changes
// nothing; and delta-seconds and HTTP dates mean what RFC 9110 says,
// clamped.
//
// Run it with: go test -run '^$' -fuzz '^FuzzParseRetryAfter$' -fuzztime 10s ./graph
func FuzzParseRetryAfter(f *testing.F) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, v := range []string{
		"0", "7", " 120 ", "-5", "3600", "3601", "99999999999999999999999", "-99999999999999999999999",
		"", " ", "soon", "1.5", "-", "+5", "12s", "0x10", "1e3", "٣", "7\x00",
		now.Add(30 * time.Second).Format(http.TimeFormat),
		now.Add(-time.Minute).Format(http.TimeFormat),
		now.Add(48 * time.Hour).Format(http.TimeFormat),
		"Sunday, 06-Nov-94 08:49:37 GMT", "Sun Nov  6 08:49:37 1994",
		"Fri, 02 Jan 2026 03:04:35 PST",
	} {
		f.Add(v, now.Unix())
	}
	f.Fuzz(func(t *testing.T, v string, unix int64) {
		now := time.Unix(unix%(1<<40), 0).UTC()
		d, ok := graph.ParseRetryAfter(v, now)
		if !ok {
			if d != 0 {
				t.Fatalf("ParseRetryAfter(%q) = %v without a value", v, d)
			}
			return
		}
		if d < 0 || d > time.Hour {
			t.Fatalf("ParseRetryAfter(%q) = %v, outside [0, 1h]", v, d)
		}
		if d2, ok2 := graph.ParseRetryAfter(" \t"+v+"\t ", now); d2 != d || !ok2 {
			t.Fatalf("whitespace changed ParseRetryAfter(%q) from %v to %v, %v", v, d, d2, ok2)
		}
		trimmed := strings.TrimSpace(v)
		if n, err := strconv.ParseInt(trimmed, 10, 64); err == nil && !strings.HasPrefix(trimmed, "+") {
			if want := clamp(time.Duration(min(max(n, 0), 3600)) * time.Second); d != want {
				t.Fatalf("ParseRetryAfter(%q) = %v, want %v", v, d, want)
			}
		}
		if at, err := http.ParseTime(trimmed); err == nil {
			if want := clamp(at.Sub(now)); d != want {
				t.Fatalf("ParseRetryAfter(%q) at %v = %v, want %v", v, now, d, want)
			}
		}
	})
}

func clamp(d time.Duration) time.Duration {
	return min(max(d, 0), time.Hour)
}
