package ratelimit

import (
	"encoding/base64"
	"strings"
)

// Key prefixes in the bucket. The window log of (app, tenant) lives at
// "window.<app>.<tenant>", its pause at "pause.<app>.<tenant>" and its
// learned budget at "budget.<app>.<tenant>".
const (
	windowPrefix = "window."
	pausePrefix  = "pause."
	budgetPrefix = "budget."
)

// plainToken reports whether id can stand in a key as it is: GUIDs and
// other ids of [-_a-zA-Z0-9], without dots (the key separator) or the
// escape character "=". It runs once per permit, hence no regexp.
func plainToken(id string) bool {
	if id == "" {
		return false
	}
	for i := range len(id) {
		switch c := id[i]; {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_':
		default:
			return false
		}
	}
	return true
}

// keyToken turns an app or tenant id into one token of a KV key, which
// allows only [-/_=.a-zA-Z0-9]. Ids are case-insensitive (GUIDs, domain
// names), so the token is lowercased to give one limit per tenant however
// a job spells it. Anything else (a domain's dots, spaces, non-ASCII) is
// written as "=" followed by unpadded base64url; plain tokens never contain
// "=", so two different ids never share a token.
func keyToken(id string) string {
	id = strings.ToLower(id)
	if plainToken(id) {
		return id
	}
	return "=" + base64.RawURLEncoding.EncodeToString([]byte(id))
}

// windowKey is the key of the window log of app and tenant tokens.
func windowKey(app, tenant string) string { return windowPrefix + app + "." + tenant }

// budgetKey is the key of the learned budget of app and tenant tokens.
func budgetKey(app, tenant string) string { return budgetPrefix + app + "." + tenant }

// tokenID is the id a key token stands for, as keyToken lowercased it.
func tokenID(token string) string {
	encoded, ok := strings.CutPrefix(token, "=")
	if !ok {
		return token
	}
	id, err := base64.RawURLEncoding.DecodeString(encoded)
	if err != nil {
		return token
	}
	return string(id)
}

// pauseKey is the key of the pause of app and tenant tokens.
func pauseKey(app, tenant string) string { return pausePrefix + app + "." + tenant }
