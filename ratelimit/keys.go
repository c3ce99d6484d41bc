package ratelimit

import (
	"encoding/base64"
	"regexp"
	"strings"
)

// Key prefixes in the bucket. The window log of (app, tenant) lives at
// "window.<app>.<tenant>" and its pause at "pause.<app>.<tenant>".
const (
	windowPrefix = "window."
	pausePrefix  = "pause."
)

// plainToken matches an id that can stand in a key as it is: GUIDs and
// other ids without dots (the key separator) or the escape character "=".
var plainToken = regexp.MustCompile(`^[-_a-zA-Z0-9]+$`)

// keyToken turns an app or tenant id into one token of a KV key, which
// allows only [-/_=.a-zA-Z0-9]. Ids are case-insensitive (GUIDs, domain
// names), so the token is lowercased to give one limit per tenant however
// a job spells it. Anything else (a domain's dots, spaces, non-ASCII) is
// written as "=" followed by unpadded base64url; plain tokens never contain
// "=", so two different ids never share a token.
func keyToken(id string) string {
	id = strings.ToLower(id)
	if plainToken.MatchString(id) {
		return id
	}
	return "=" + base64.RawURLEncoding.EncodeToString([]byte(id))
}

// windowKey is the key of the window log of app and tenant tokens.
func windowKey(app, tenant string) string { return windowPrefix + app + "." + tenant }

// pauseKey is the key of the pause of app and tenant tokens.
func pauseKey(app, tenant string) string { return pausePrefix + app + "." + tenant }
