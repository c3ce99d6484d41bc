package batch_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/recoverpasscode/recoverpasscode/batch"
	"github.com/recoverpasscode/recoverpasscode/ratelimit"
)

var t0 = time.Date(2026, 5, 1, 9, 0, 0, 0, time.UTC)

func counts(ok, failed int) batch.Counts { return batch.Counts{Succeeded: ok, Failed: failed} }

// TestETA: before any rate is seen the estimate is the rate limit's
// (times the tenants); then the observed rate, never faster than the limit
// nor than its sliding window allows.
func TestETA(t *testing.T) {
	limit := ratelimit.Rate{N: 200, Per: 20 * time.Second} // 10/s per tenant
	for _, tc := range []struct {
		name    string
		total   int
		rate    ratelimit.Rate
		tenants int
		steps   []batch.Counts // one per second
		want    time.Duration
		rate10  float64 // observed rate, times 10
	}{
		{"limit alone at the start", 5000, limit, 1, nil, 500 * time.Second, 0},
		{"two tenants go twice as fast", 5000, limit, 2, nil, 250 * time.Second, 0},
		{"slower than the limit", 5000, limit, 1, []batch.Counts{counts(5, 0), counts(10, 0), counts(15, 0)}, 997 * time.Second, 50},
		{"faster than the limit", 5000, limit, 1, []batch.Counts{counts(100, 0), counts(200, 0), counts(300, 0)}, 477 * time.Second, 1000}, // the window bound: 24 windows of 200 from the start
		{"a small batch waits for the window to move", 250, limit, 1, []batch.Counts{counts(200, 0)}, 19 * time.Second, 0},
		{"unlimited, unknown until observed", 5000, ratelimit.Unlimited, 1, nil, -1, 0},
		{"unlimited, observed", 5000, ratelimit.Unlimited, 1, []batch.Counts{counts(50, 0), counts(100, 0)}, 98 * time.Second, 500},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := batch.NewProgress(tc.total, tc.rate, tc.tenants, t0, 0)
			s := p.Update(t0, batch.Counts{})
			for i, c := range tc.steps {
				s = p.Update(t0.Add(time.Duration(i+1)*time.Second), c)
			}
			if s.ETA != tc.want {
				t.Errorf("ETA %s, want %s", s.ETA, tc.want)
			}
			if got := int(s.Rate * 10); got != int(tc.rate10) {
				t.Errorf("rate %.1f, want %.1f", s.Rate, tc.rate10/10)
			}
		})
	}
}

// TestRateIgnoresEarlierResults: results collected from an earlier run
// at the start do not count as speed.
func TestRateIgnoresEarlierResults(t *testing.T) {
	p := batch.NewProgress(100, ratelimit.Unlimited, 1, t0, 90)
	s := p.Update(t0.Add(5*time.Second), counts(90, 0))
	if s.Rate != 0 || s.ETA != -1 || s.Done != 90 {
		t.Errorf("snapshot %+v", s)
	}
}

// TestBar: the terminal renderer redraws one line within 80 columns.
func TestBar(t *testing.T) {
	var buf bytes.Buffer
	bar := batch.NewBar(&buf, 0)
	p := batch.NewProgress(10000, ratelimit.DefaultRate, 1, t0, 0)
	bar.Update(p.Update(t0, batch.Counts{}))
	bar.Update(p.Update(t0.Add(10*time.Second), counts(95, 5)))
	bar.Finish(p.Update(t0.Add(time.Hour), counts(9990, 10)))
	out := buf.String()
	want := []string{
		"\r[--------------------] 0/10000   0%  ok 0  not ok 0  -/s  ETA 16m40s\x1b[K",
		"\r[--------------------] 100/10000   1%  ok 95  not ok 5  10.0/s  ETA 16m30s\x1b[K",
		"\r[####################] 10000/10000 100%  ok 9990  not ok 10  2.8/s  ETA 0s\x1b[K\n",
	}
	if got := strings.Join(want, ""); out != got {
		t.Errorf("bar wrote\n%q\nwant\n%q", out, got)
	}
	for _, line := range strings.Split(strings.TrimSpace(out), "\r") {
		visible := strings.TrimSuffix(strings.TrimSpace(line), "\x1b[K")
		if len(visible) >= 80 {
			t.Errorf("line of %d columns: %q", len(visible), visible)
		}
	}
}

// TestLines: off a terminal, a plain line at most every period and a last
// one, with no control character but the newline.
func TestLines(t *testing.T) {
	var buf bytes.Buffer
	lines := batch.NewLines(&buf, 10*time.Second)
	p := batch.NewProgress(100, ratelimit.Unlimited, 1, t0, 0)
	for i := range 30 {
		lines.Update(p.Update(t0.Add(time.Duration(i)*time.Second), counts(i, 0)))
	}
	lines.Finish(p.Update(t0.Add(31*time.Second), counts(99, 1)))
	want := "progress: 0/100   0% | 0 succeeded, 0 did not | -/s | ETA ?\n" +
		"progress: 10/100  10% | 10 succeeded, 0 did not | 1.0/s | ETA 1m30s\n" +
		"progress: 20/100  20% | 20 succeeded, 0 did not | 1.0/s | ETA 1m20s\n" +
		"progress: 100/100 100% | 99 succeeded, 1 did not | 3.3/s | ETA 0s\n"
	if buf.String() != want {
		t.Errorf("lines wrote\n%s\nwant\n%s", buf.String(), want)
	}
	for _, r := range buf.String() {
		if r != '\n' && unicode.IsControl(r) {
			t.Errorf("control character %q", r)
		}
	}
}

// TestIsTerminal: files and pipes are not terminals.
func TestIsTerminal(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "out"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	if batch.IsTerminal(f) || batch.IsTerminal(w) {
		t.Error("a file or a pipe taken for a terminal")
	}
}

// TestDuration formats times for people.
func TestDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0: "0s", 420 * time.Millisecond: "420ms", 4240 * time.Millisecond: "4.2s",
		81 * time.Second: "1m21s", 2*time.Hour + 5*time.Minute + 20*time.Second: "2h05m",
	} {
		if got := batch.Duration(d); got != want {
			t.Errorf("Duration(%s) = %q, want %q", d, got, want)
		}
	}
}
