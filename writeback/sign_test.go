package writeback

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// The published test vector of the Standard Webhooks reference libraries
// (standard-webhooks/standard-webhooks, libraries/go/webhook_test.go,
// TestWebhookSign; the same values in every language's tests).
const (
	vectorSecret    = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	vectorID        = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	vectorTimestamp = 1614265330
	vectorBody      = `{"test": 2432232314}`
	vectorSignature = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
)

func TestSignMatchesTheSpecificationVector(t *testing.T) {
	s, err := ParseSecret(vectorSecret)
	if err != nil {
		t.Fatal(err)
	}
	if got := Sign(vectorID, time.Unix(vectorTimestamp, 0), []byte(vectorBody), s); got != vectorSignature {
		t.Fatalf("Sign = %s, want the vector's %s", got, vectorSignature)
	}
	h := http.Header{}
	h.Set(HeaderID, vectorID)
	h.Set(HeaderTimestamp, fmt.Sprint(vectorTimestamp))
	h.Set(HeaderSignature, vectorSignature)
	if err := Verify(h, []byte(vectorBody), time.Unix(vectorTimestamp, 0), 5*time.Minute, s); err != nil {
		t.Fatalf("Verify of the vector: %v", err)
	}
}

func TestRotationSignsWithBoth(t *testing.T) {
	oldSecret, newSecret := mustSecret(t), mustSecret(t)
	now := time.Now()
	body := []byte(`{"jobId":"j1"}`)
	header := Sign("j1/result", now, body, newSecret, oldSecret)
	if parts := strings.Fields(header); len(parts) != 2 || !strings.HasPrefix(parts[0], "v1,") || !strings.HasPrefix(parts[1], "v1,") {
		t.Fatalf("header %q: want two v1 signatures", header)
	}
	h := http.Header{}
	h.Set(HeaderID, "j1/result")
	h.Set(HeaderTimestamp, fmt.Sprint(now.Unix()))
	h.Set(HeaderSignature, header)
	for name, s := range map[string]Secret{"old": oldSecret, "new": newSecret} {
		if err := Verify(h, body, now, time.Minute, s); err != nil {
			t.Errorf("a receiver with only the %s secret: %v", name, err)
		}
	}
}

func TestVerifyRefuses(t *testing.T) {
	s := mustSecret(t)
	now := time.Now()
	body := []byte(`{"jobId":"j1"}`)
	good := func() http.Header {
		h := http.Header{}
		h.Set(HeaderID, "j1/result")
		h.Set(HeaderTimestamp, fmt.Sprint(now.Unix()))
		h.Set(HeaderSignature, Sign("j1/result", now, body, s))
		return h
	}
	for _, tc := range []struct {
		name   string
		change func(http.Header) []byte
		want   error
	}{
		{"another secret", func(h http.Header) []byte {
			h.Set(HeaderSignature, Sign("j1/result", now, body, mustSecret(t)))
			return body
		}, ErrSignature},
		{"a changed body", func(http.Header) []byte { return []byte(`{"jobId":"j2"}`) }, ErrSignature},
		{"another id", func(h http.Header) []byte { h.Set(HeaderID, "j2/result"); return body }, ErrSignature},
		{"an old timestamp", func(h http.Header) []byte {
			old := now.Add(-10 * time.Minute)
			h.Set(HeaderTimestamp, fmt.Sprint(old.Unix()))
			h.Set(HeaderSignature, Sign("j1/result", old, body, s))
			return body
		}, ErrTimestamp},
		{"no signature", func(h http.Header) []byte { h.Del(HeaderSignature); return body }, ErrMissingHeader},
		{"a v1a signature only", func(h http.Header) []byte {
			h.Set(HeaderSignature, "v1a"+strings.TrimPrefix(h.Get(HeaderSignature), "v1"))
			return body
		}, ErrSignature},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := good()
			b := tc.change(h)
			if err := Verify(h, b, now, 5*time.Minute, s); !errors.Is(err, tc.want) {
				t.Fatalf("Verify = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestParseSecret(t *testing.T) {
	for _, bad := range []string{"", "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_not base64!", "whsec_c2hvcnQ="} {
		if _, err := ParseSecret(bad); err == nil {
			t.Errorf("ParseSecret(%q) accepted it", bad)
		} else if bad != "" && strings.Contains(err.Error(), strings.TrimPrefix(bad, "whsec_")) {
			t.Errorf("the error quotes the secret: %v", err)
		}
	}
	s := mustSecret(t)
	if fmt.Sprint(s) != "[redacted]" || strings.Contains(fmt.Sprintf("%#v", s), "key") {
		t.Errorf("a Secret prints its key: %v %#v", s, s)
	}
}

func mustSecret(t *testing.T) Secret {
	t.Helper()
	raw, err := NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	s, err := ParseSecret(raw)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
