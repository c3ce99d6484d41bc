package ratelimit

import (
	"strings"
	"testing"
	"time"
)

func TestParseRate(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    Rate
		str     string
		wantErr string
	}{
		{in: "200/20s", want: Rate{200, 20 * time.Second}, str: "200/20s"},
		{in: "20/2s", want: Rate{20, 2 * time.Second}, str: "20/2s"},
		{in: "5/1m", want: Rate{5, time.Minute}, str: "5/1m"},
		{in: "5/m", want: Rate{5, time.Minute}, str: "5/1m"},
		{in: "100/1h", want: Rate{100, time.Hour}, str: "100/1h"},
		{in: "3/1m30s", want: Rate{3, 90 * time.Second}, str: "3/1m30s"},
		{in: "50/500ms", want: Rate{50, 500 * time.Millisecond}, str: "50/500ms"},
		{in: " 200 / 20s ", want: Rate{200, 20 * time.Second}, str: "200/20s"},
		{in: "unlimited", want: Unlimited, str: "unlimited"},
		{in: "Unlimited", want: Unlimited, str: "unlimited"},
		{in: "0", want: Unlimited, str: "unlimited"},
		{in: "0/20s", want: Rate{0, 20 * time.Second}, str: "unlimited"},
		{in: "", wantErr: "want N/duration"},
		{in: "200", wantErr: "want N/duration"},
		{in: "200/20", wantErr: `window "20" is not a duration`},
		{in: "many/20s", wantErr: `number of calls "many" is not a whole number`},
		{in: "1.5/20s", wantErr: "not a whole number"},
		{in: "-1/20s", wantErr: "negative number of calls"},
		{in: "200/0s", wantErr: "must be positive"},
		{in: "200/-20s", wantErr: "must be positive"},
		{in: "200/20 s", wantErr: "not a duration"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseRate(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.HasPrefix(err.Error(), "ratelimit: parse rate") {
					t.Fatalf("ParseRate(%q) = %v, %v; want an error containing %q", tc.in, got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("ParseRate(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
			}
			if s := got.String(); s != tc.str {
				t.Errorf("String() = %q, want %q", s, tc.str)
			}
			if again, err := ParseRate(got.String()); err != nil || again.N != got.N || (!got.Unlimited() && again != got) {
				t.Errorf("ParseRate(String()) = %v, %v; want %v", again, err, got)
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{"defaults", Config{App: testApp}, ""},
		{"unlimited", Config{App: testApp, Rate: Unlimited}, ""},
		{"no app", Config{}, "App"},
		{"negative rate", Config{App: testApp, Rate: Rate{N: -1, Per: time.Second}}, "negative"},
		{"no window", Config{App: testApp, Rate: Rate{N: 5}}, "positive"},
		{"negative batch", Config{App: testApp, Batch: -1}, "Batch"},
		{"validity as long as the window", Config{App: testApp, Validity: 20 * time.Second}, "Validity"},
		{"negative margin", Config{App: testApp, Margin: -time.Millisecond}, "Margin"},
		{"window too short for a validity", Config{App: testApp, Rate: Rate{N: 1, Per: 10 * time.Nanosecond}}, "Validity"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Validate() = %v, want an error about %s", err, tc.wantErr)
			}
		})
	}
}

func TestConfigDefaults(t *testing.T) {
	for _, tc := range []struct {
		rate     Rate
		batch    int
		validity time.Duration
		margin   time.Duration
	}{
		{Rate{}, 10, 250 * time.Millisecond, 100 * time.Millisecond},
		{Rate{20, time.Second}, 1, 25 * time.Millisecond, 20 * time.Millisecond},
		{Rate{20, 2 * time.Second}, 1, 25 * time.Millisecond, 40 * time.Millisecond},
		{Rate{50, 500 * time.Millisecond}, 2, 25 * time.Millisecond, 10 * time.Millisecond},
		{Rate{10, 200 * time.Millisecond}, 1, 10 * time.Millisecond, 4 * time.Millisecond},
	} {
		t.Run(tc.rate.String(), func(t *testing.T) {
			c := Config{App: testApp, Rate: tc.rate}.withDefaults()
			if c.Batch != tc.batch || c.Validity != tc.validity || c.Margin != tc.margin || c.Owner == "" {
				t.Errorf("defaults = batch %d, validity %s, margin %s, owner %q; want %d, %s, %s and an owner",
					c.Batch, c.Validity, c.Margin, c.Owner, tc.batch, tc.validity, tc.margin)
			}
		})
	}
}

func TestCeiling(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want float64
	}{
		{"Intune's limit: 20s over 20s+100ms+250ms", Config{}, 20.0 / 20.35},
		{"1s windows: 1s over 1s+20ms+25ms", Config{Rate: Rate{20, time.Second}}, 1 / 1.045},
		{"set explicitly", Config{Rate: Rate{10, time.Second}, Validity: 50 * time.Millisecond, Margin: 50 * time.Millisecond}, 1 / 1.1},
		{"unlimited", Config{Rate: Unlimited}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.cfg.Ceiling(); got < tc.want-1e-9 || got > tc.want+1e-9 {
				t.Errorf("Ceiling() = %v, want %v", got, tc.want)
			}
		})
	}
}
