package gateway

import (
	"net/http"
	"strings"
)

// Authentication methods, as logged and counted.
const (
	methodAPIKey = "api_key"
	methodEntra  = "entra"
)

// realm names the gateway in WWW-Authenticate challenges.
const realm = "recoverpasscode"

// unauthenticated is a 401 with an RFC 6750 challenge. code is the
// challenge's error ("invalid_token"), or "" when no credential was sent.
func unauthenticated(code, detail string) *problemError {
	p := newProblem(ProblemUnauthenticated, http.StatusUnauthorized, "%s", detail)
	p.p.challenge = `Bearer realm="` + realm + `"`
	if code != "" {
		p.p.challenge += `, error="` + code + `"`
	}
	return p
}

// authenticate names the caller's source from its credential: an API key
// (Authorization: Bearer <key>, or X-API-Key: <key>) or an Entra ID access
// token (Authorization: Bearer <JWT>). The credential itself never leaves
// this function: not in an error, not in a log.
func (s *Server) authenticate(r *http.Request) (source, method string, perr *problemError) {
	cred, perr := credential(r)
	if perr != nil {
		return "", "", perr
	}
	if looksLikeJWT(cred) {
		if s.entra == nil {
			return "", "", unauthenticated("invalid_token", "access tokens are not accepted here: no source names an Entra application; use an API key")
		}
		source, perr := s.entra.verify(r.Context(), cred)
		return source, methodEntra, perr
	}
	source, ok := s.keys.lookup(cred)
	if !ok {
		return "", "", unauthenticated("invalid_token", "the API key is not one this gateway knows: check it, or whether it was rotated out")
	}
	return source, methodAPIKey, nil
}

// credential returns the bearer credential of r.
func credential(r *http.Request) (string, *problemError) {
	authz := r.Header.Get("Authorization")
	apiKey := r.Header.Get("X-API-Key")
	switch {
	case authz != "" && apiKey != "":
		return "", unauthenticated("invalid_request", "send one credential: Authorization or X-API-Key, not both")
	case apiKey != "":
		return strings.TrimSpace(apiKey), nil
	case authz == "":
		return "", unauthenticated("", "no credential: send Authorization: Bearer <API key or access token>")
	}
	scheme, value, _ := strings.Cut(authz, " ")
	value = strings.TrimSpace(value)
	if !strings.EqualFold(scheme, "Bearer") || value == "" {
		return "", unauthenticated("invalid_request", "the Authorization scheme must be Bearer: Authorization: Bearer <API key or access token>")
	}
	return value, nil
}
