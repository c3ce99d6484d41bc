package writeback_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"math"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/recoverpasscode/recoverpasscode/writeback"
)

// The receiver snippet of the README, verbatim between the markers.

// README:begin
// verify reports whether a delivery is genuine: signed with secret
// (whsec_…) over webhook-id, webhook-timestamp and the raw body, and sent
// within the last five minutes.
func verify(secret string, h http.Header, body []byte) bool {
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	ts, tsErr := strconv.ParseInt(h.Get("webhook-timestamp"), 10, 64)
	if err != nil || tsErr != nil || math.Abs(time.Since(time.Unix(ts, 0)).Seconds()) > 300 {
		return false
	}
	mac := hmac.New(sha256.New, key)
	fmt.Fprintf(mac, "%s.%s.%s", h.Get("webhook-id"), h.Get("webhook-timestamp"), body)
	want := "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
	for _, sig := range strings.Fields(h.Get("webhook-signature")) { // two while rotating
		if hmac.Equal([]byte(sig), []byte(want)) {
			return true
		}
	}
	return false
}

// README:end

// TestReadmeReceiver: the README's snippet is this file's verify, and it
// accepts what the deliverer signs and nothing else.
func TestReadmeReceiver(t *testing.T) {
	src, err := os.ReadFile("readme_test.go")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, _ := strings.Cut(string(src), "// README:begin\n")
	snippet, _, _ := strings.Cut(rest, "\n// README:end")
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), "```go\n"+snippet+"\n") {
		t.Errorf("README.md lacks the receiver snippet of readme_test.go:\n%s", snippet)
	}

	secret, other := mustNewSecret(t), mustNewSecret(t)
	s, _ := writeback.ParseSecret(secret)
	o, _ := writeback.ParseSecret(other)
	body := []byte(`{"jobId":"j1","status":"succeeded"}`)
	delivery := func(ts time.Time, secrets ...writeback.Secret) http.Header {
		h := http.Header{}
		h.Set(writeback.HeaderID, "j1/result")
		h.Set(writeback.HeaderTimestamp, strconv.FormatInt(ts.Unix(), 10))
		h.Set(writeback.HeaderSignature, writeback.Sign("j1/result", ts, body, secrets...))
		return h
	}
	now := time.Now()
	if !verify(secret, delivery(now, s), body) || !verify(secret, delivery(now, o, s), body) {
		t.Error("the snippet refuses a genuine delivery")
	}
	for name, bad := range map[string]func() (http.Header, []byte){
		"another secret": func() (http.Header, []byte) { return delivery(now, o), body },
		"another body":   func() (http.Header, []byte) { return delivery(now, s), []byte(`{"jobId":"j2"}`) },
		"an old one":     func() (http.Header, []byte) { return delivery(now.Add(-10*time.Minute), s), body },
		"no signature": func() (http.Header, []byte) {
			h := delivery(now, s)
			h.Del(writeback.HeaderSignature)
			return h, body
		},
	} {
		if h, b := bad(); verify(secret, h, b) {
			t.Errorf("the snippet accepts %s", name)
		}
	}
}
