package graph_test

import (
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/recoverpasscode/recoverpasscode/graph"
)

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"7", 7 * time.Second, true},
		{" 120 ", 2 * time.Minute, true},
		{"0", 0, true},
		{"-5", 0, true},
		{"3600", time.Hour, true},
		{"86400", time.Hour, true},
		{"99999999999999999999999", time.Hour, true},
		{"-99999999999999999999999", 0, true},
		{now.Add(30 * time.Second).Format(http.TimeFormat), 30 * time.Second, true},
		{now.Add(-time.Minute).Format(http.TimeFormat), 0, true},
		{now.Add(48 * time.Hour).Format(http.TimeFormat), time.Hour, true},
		{"", 0, false},
		{"soon", 0, false},
		{"1.5", 0, false},
		{"-", 0, false},
		{"12s", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, ok := graph.ParseRetryAfter(tt.in, now)
			if got != tt.want || ok != tt.ok {
				t.Fatalf("ParseRetryAfter(%q) = %v, %v; want %v, %v", tt.in, got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestAPIErrorClassFromStatus(t *testing.T) {
	tests := []struct {
		status int
		class  error
	}{
		{400, graph.ErrPermanent},
		{401, graph.ErrUnauthorized},
		{403, graph.ErrPermanent},
		{404, graph.ErrPermanent},
		{405, graph.ErrPermanent},
		{408, graph.ErrTransient},
		{409, graph.ErrPermanent},
		{422, graph.ErrPermanent},
		{429, graph.ErrThrottled},
		{500, graph.ErrUnknownOutcome},
		{501, graph.ErrPermanent},
		{502, graph.ErrUnknownOutcome},
		{503, graph.ErrTransient},
		{504, graph.ErrUnknownOutcome},
		{507, graph.ErrUnknownOutcome},
	}
	all := []error{graph.ErrPermanent, graph.ErrUnauthorized, graph.ErrTransient, graph.ErrThrottled, graph.ErrUnknownOutcome, graph.ErrCredential}
	for _, tt := range tests {
		t.Run(http.StatusText(tt.status), func(t *testing.T) {
			err := error(&graph.APIError{Status: tt.status})
			for _, class := range all {
				if got := errors.Is(err, class); got != (class == tt.class) {
					t.Fatalf("errors.Is(%d, %v) = %v", tt.status, class, got)
				}
			}
		})
	}
}

func TestRetryAfter(t *testing.T) {
	asked := func(d time.Duration) *graph.APIError {
		return &graph.APIError{Status: 429, RetryAfter: d, HasRetryAfter: true}
	}
	tests := []struct {
		name     string
		err      error
		want     time.Duration
		ok       bool
		throttle time.Duration
	}{
		{"nil", nil, 0, false, time.Second},
		{"not an APIError", errors.New("boom"), 0, false, time.Second},
		{"no header", &graph.APIError{Status: 429}, 0, false, time.Second},
		{"30s", asked(30 * time.Second), 30 * time.Second, true, 30 * time.Second},
		{"wrapped", fmt.Errorf("resolve: %w", asked(5*time.Second)), 5 * time.Second, true, 5 * time.Second},
		{"0s: at least a second's pause", asked(0), 0, true, time.Second},
		{"sub-second: at least a second's pause", asked(300 * time.Millisecond), 300 * time.Millisecond, true, time.Second},
		{"negative: none", asked(-time.Minute), 0, true, time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := graph.RetryAfter(tt.err)
			if got != tt.want || ok != tt.ok {
				t.Errorf("RetryAfter = %v, %v; want %v, %v", got, ok, tt.want, tt.ok)
			}
			if got := graph.ThrottleWait(tt.err); got != tt.throttle {
				t.Errorf("ThrottleWait = %v; want %v", got, tt.throttle)
			}
		})
	}
}
