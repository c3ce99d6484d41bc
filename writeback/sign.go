package writeback

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// The Standard Webhooks headers (https://www.standardwebhooks.com).
const (
	HeaderID        = "webhook-id"
	HeaderTimestamp = "webhook-timestamp"
	HeaderSignature = "webhook-signature"
)

// secretPrefix marks a Standard Webhooks symmetric secret.
const secretPrefix = "whsec_"

// The bounds of a secret's key, from the specification: at least 24 bytes,
// at most 512 bits.
const (
	minSecretBytes = 24
	maxSecretBytes = 64
)

// Secret is a Standard Webhooks signing key. It prints as "[redacted]".
type Secret struct {
	key []byte
}

// ParseSecret reads a secret in its serialized form, "whsec_" followed by
// the standard base64 of 24 to 64 random bytes. Errors never quote it.
func ParseSecret(s string) (Secret, error) {
	b64, ok := strings.CutPrefix(s, secretPrefix)
	if !ok {
		return Secret{}, errors.New("not a whsec_<base64> secret: it must start with whsec_")
	}
	key, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return Secret{}, errors.New("not a whsec_<base64> secret: what follows whsec_ is not standard base64")
	}
	if len(key) < minSecretBytes || len(key) > maxSecretBytes {
		return Secret{}, fmt.Errorf("the secret's key is %d bytes: want %d to %d (NewSecret makes one)", len(key), minSecretBytes, maxSecretBytes)
	}
	return Secret{key: key}, nil
}

// NewSecret returns a new random secret of 32 bytes, serialized: give it
// to the receiver and put it in the webhook's configuration.
func NewSecret() (string, error) {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return "", fmt.Errorf("writeback: new secret: %w", err)
	}
	return secretPrefix + base64.StdEncoding.EncodeToString(key), nil
}

// String hides the key.
func (Secret) String() string { return "[redacted]" }

// GoString hides the key from %#v.
func (Secret) GoString() string { return "writeback.Secret{[redacted]}" }

// sign returns the base64 HMAC-SHA256 of id.timestamp.body.
func (s Secret) sign(id string, ts int64, body []byte) []byte {
	mac := hmac.New(sha256.New, s.key)
	mac.Write([]byte(id))
	mac.Write([]byte{'.'})
	mac.Write(strconv.AppendInt(nil, ts, 10))
	mac.Write([]byte{'.'})
	mac.Write(body)
	return mac.Sum(nil)
}

// Sign returns the webhook-signature header of a delivery: one
// "v1,<base64 signature>" per secret, space-separated. id must not hold a
// '.', which would make two different deliveries sign the same bytes.
func Sign(id string, ts time.Time, body []byte, secrets ...Secret) string {
	parts := make([]string, 0, len(secrets))
	for _, s := range secrets {
		parts = append(parts, "v1,"+base64.StdEncoding.EncodeToString(s.sign(id, ts.Unix(), body)))
	}
	return strings.Join(parts, " ")
}

// Verification errors, for a receiver to tell apart.
var (
	// ErrMissingHeader: a webhook header is absent.
	ErrMissingHeader = errors.New("writeback: webhook-id, webhook-timestamp and webhook-signature are required")
	// ErrTimestamp: webhook-timestamp is not a Unix time within the tolerance.
	ErrTimestamp = errors.New("writeback: webhook-timestamp is malformed or too far from now")
	// ErrSignature: no signature matches any secret.
	ErrSignature = errors.New("writeback: no webhook-signature matches")
)

// Verify checks a delivery as a receiver must: the three headers are
// present, webhook-timestamp is within tolerance of now (replayed
// deliveries are refused), and one v1 signature of webhook-signature
// matches one of the secrets, compared in constant time. body is the raw
// request body, before any JSON parsing.
func Verify(h http.Header, body []byte, now time.Time, tolerance time.Duration, secrets ...Secret) error {
	id, tsText, sigs := h.Get(HeaderID), h.Get(HeaderTimestamp), h.Get(HeaderSignature)
	if id == "" || tsText == "" || sigs == "" {
		return ErrMissingHeader
	}
	ts, err := strconv.ParseInt(tsText, 10, 64)
	if err != nil {
		return ErrTimestamp
	}
	if d := now.Sub(time.Unix(ts, 0)); d > tolerance || d < -tolerance {
		return ErrTimestamp
	}
	for _, s := range secrets {
		want := s.sign(id, ts, body)
		for _, sig := range strings.Fields(sigs) {
			b64, ok := strings.CutPrefix(sig, "v1,")
			if !ok {
				continue
			}
			got, err := base64.StdEncoding.DecodeString(b64)
			if err == nil && hmac.Equal(got, want) {
				return nil
			}
		}
	}
	return ErrSignature
}
