package gateway

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"
)

// apiKeyPrefix starts every key NewAPIKey makes, so that secret scanners
// and people can tell one.
const apiKeyPrefix = "rpk_"

// NewAPIKey returns a new random API key (256 bits) and the hash line that
// configures it ("sha256:<hex>"). Give the key to the calling system and
// put only the hash in the configuration.
func NewAPIKey() (key, hash string, err error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", "", fmt.Errorf("gateway: new API key: %w", err)
	}
	key = apiKeyPrefix + base64.RawURLEncoding.EncodeToString(b[:])
	return key, HashAPIKey(key), nil
}

// HashAPIKey returns the configuration form of key: "sha256:" and the hex
// of its SHA-256. An API key is 256 random bits, so a fast hash is enough:
// there is no password to guess.
func HashAPIKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// keyring maps API key hashes to their sources. It is read-only after
// newKeyring and safe for concurrent use.
type keyring struct {
	entries []keyEntry
}

type keyEntry struct {
	hash   [32]byte
	source string
}

func newKeyring(sources []Source) keyring {
	var k keyring
	for _, s := range sources {
		for _, h := range s.APIKeys {
			sum, err := parseKeyHash(h)
			if err != nil {
				continue // Validate refused it
			}
			k.entries = append(k.entries, keyEntry{hash: sum, source: s.Name})
		}
	}
	return k
}

// lookup returns the source of key. Every configured hash is compared, in
// constant time, whatever matches: how long it takes says nothing about
// which key, if any, is close.
func (k keyring) lookup(key string) (source string, ok bool) {
	sum := sha256.Sum256([]byte(key))
	for _, e := range k.entries {
		if subtle.ConstantTimeCompare(sum[:], e.hash[:]) == 1 {
			source, ok = e.source, true
		}
	}
	return source, ok
}

// looksLikeJWT reports whether a bearer credential has a JWT's shape
// (three base64url segments, a JSON header), as API keys never do.
func looksLikeJWT(s string) bool {
	return strings.HasPrefix(s, "eyJ") && strings.Count(s, ".") == 2
}
