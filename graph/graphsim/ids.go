package graphsim

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"strings"
)

// newGUID returns a random (version 4) GUID in lower case.
func newGUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// newOpaqueToken returns 256 random bits, base64url-encoded, for access
// tokens, refresh tokens and device codes.
func newOpaqueToken() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// isUPN reports whether s is a user principal name: a local part of
// letters, digits and the specials Entra allows (including the '#' of guest
// accounts), an '@', and a domain of at least two dot-separated labels. It
// rejects anything that could change a URL's path or query: '/', '\', '?',
// whitespace and control characters.
func isUPN(s string) bool {
	if len(s) > 1024 {
		return false
	}
	local, domain, ok := strings.Cut(s, "@")
	if !ok || !validUPNLocal(local) {
		return false
	}
	labels := strings.Split(domain, ".")
	if len(labels) < 2 {
		return false
	}
	for _, l := range labels {
		if !validDomainLabel(l) {
			return false
		}
	}
	return true
}

func validUPNLocal(s string) bool {
	if s == "" || s[0] == '.' || s[len(s)-1] == '.' || strings.Contains(s, "..") {
		return false
	}
	for i := range len(s) {
		c := s[i]
		if isAlnum(c) || strings.IndexByte(".!#$%&'*+-=^_`{|}~", c) >= 0 {
			continue
		}
		return false
	}
	return true
}

func validDomainLabel(s string) bool {
	if s == "" || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for i := range len(s) {
		if !isAlnum(s[i]) && s[i] != '-' {
			return false
		}
	}
	return true
}

func isAlnum(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
}
