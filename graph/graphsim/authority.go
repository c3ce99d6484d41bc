package graphsim

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// oauthError is an Entra ID token endpoint error: an OAuth error value, an
// AADSTS number and its description, answered with an HTTP status. It is
// what the double answers (see writeOAuthError), not a Go error.
type oauthError struct {
	status int
	kind   string // the OAuth "error" value, e.g. invalid_client
	code   int    // the AADSTS number
	desc   string // the text after "AADSTSnnn: "
}

func errTenantNotFound(tenant string) *oauthError {
	return &oauthError{http.StatusBadRequest, "invalid_tenant", 90002,
		fmt.Sprintf("Tenant '%s' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud.", tenant)}
}

// serveAuthority routes Entra ID requests. Paths are matched on their
// escaped form, segment by segment, so an escaped '/' cannot move a request
// to another route.
func (s *Server) serveAuthority(w http.ResponseWriter, r *http.Request) {
	segs, ok := splitEscapedPath(r.URL.EscapedPath())
	switch {
	case !ok:
		s.writeOAuthError(w, r, &oauthError{http.StatusBadRequest, "invalid_request", 900023, "Specified tenant identifier is neither a valid DNS name, nor a valid external domain."})
	case matchSegs(segs, "*", "v2.0", ".well-known", "openid-configuration"):
		s.serveDiscovery(w, r, strings.ToLower(segs[0]))
	case matchSegs(segs, "*", "discovery", "v2.0", "keys"):
		s.serveJWKS(w, r, strings.ToLower(segs[0]))
	case matchSegs(segs, "*", "oauth2", "v2.0", "token"):
		s.serveToken(w, r, strings.ToLower(segs[0]))
	case matchSegs(segs, "*", "oauth2", "v2.0", "authorize"):
		s.serveAuthorize(w, r, strings.ToLower(segs[0]))
	case matchSegs(segs, "*", "oauth2", "v2.0", "devicecode"):
		s.serveDeviceCode(w, r, strings.ToLower(segs[0]))
	case matchSegs(segs, "devicelogin"):
		s.serveDeviceLogin(w, r)
	default:
		s.writeOAuthError(w, r, &oauthError{http.StatusNotFound, "invalid_request", 900561, "The endpoint does not exist."})
	}
}

// splitEscapedPath splits an escaped URL path into unescaped segments. It
// fails when a segment does not unescape or unescapes to something holding
// a '/' (an escaped %2F), which no Graph or Entra key may hold.
func splitEscapedPath(escaped string) ([]string, bool) {
	raw := strings.Split(strings.TrimPrefix(escaped, "/"), "/")
	segs := make([]string, len(raw))
	for i, seg := range raw {
		u, err := url.PathUnescape(seg)
		if err != nil || strings.Contains(u, "/") {
			return nil, false
		}
		segs[i] = u
	}
	return segs, true
}

// matchSegs reports whether segs has the pattern's length and equals it,
// case-insensitively, wherever the pattern is not "*".
func matchSegs(segs []string, pattern ...string) bool {
	if len(segs) != len(pattern) {
		return false
	}
	for i, p := range pattern {
		if p != "*" && !strings.EqualFold(segs[i], p) {
			return false
		}
		if p == "*" && segs[i] == "" {
			return false
		}
	}
	return true
}

// discoveryDocument is the OpenID Connect configuration MSAL reads. MSAL
// requires authorization_endpoint, token_endpoint and an issuer on the
// authority's scheme and host; the rest is there because Entra ID serves it.
type discoveryDocument struct {
	TokenEndpoint                     string   `json:"token_endpoint"`
	TokenEndpointAuthMethodsSupported []string `json:"token_endpoint_auth_methods_supported"`
	JWKSURI                           string   `json:"jwks_uri"`
	ResponseModesSupported            []string `json:"response_modes_supported"`
	SubjectTypesSupported             []string `json:"subject_types_supported"`
	IDTokenSigningAlgValuesSupported  []string `json:"id_token_signing_alg_values_supported"`
	ResponseTypesSupported            []string `json:"response_types_supported"`
	ScopesSupported                   []string `json:"scopes_supported"`
	Issuer                            string   `json:"issuer"`
	RequestURIParameterSupported      bool     `json:"request_uri_parameter_supported"`
	AuthorizationEndpoint             string   `json:"authorization_endpoint"`
	DeviceAuthorizationEndpoint       string   `json:"device_authorization_endpoint"`
	EndSessionEndpoint                string   `json:"end_session_endpoint"`
	TenantRegionScope                 string   `json:"tenant_region_scope"`
	CloudInstanceName                 string   `json:"cloud_instance_name"`
	MSGraphHost                       string   `json:"msgraph_host"`
}

func (s *Server) serveDiscovery(w http.ResponseWriter, r *http.Request, tenant string) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		s.writeOAuthError(w, r, &oauthError{http.StatusMethodNotAllowed, "invalid_request", 900561, "The endpoint only accepts GET requests."})
		return
	}
	s.mu.Lock()
	known := s.dir.tenants[tenant]
	s.mu.Unlock()
	if !known {
		s.writeOAuthError(w, r, errTenantNotFound(tenant))
		return
	}
	base := s.AuthorityHost() + "/" + url.PathEscape(tenant)
	graphHost := strings.TrimPrefix(s.graphURL, "https://")
	writeJSON(w, http.StatusOK, discoveryDocument{
		TokenEndpoint:                     base + "/oauth2/v2.0/token",
		TokenEndpointAuthMethodsSupported: []string{"client_secret_post", "private_key_jwt", "client_secret_basic"},
		JWKSURI:                           base + "/discovery/v2.0/keys",
		ResponseModesSupported:            []string{"query", "fragment", "form_post"},
		SubjectTypesSupported:             []string{"pairwise"},
		IDTokenSigningAlgValuesSupported:  []string{"RS256"},
		ResponseTypesSupported:            []string{"code", "id_token", "code id_token", "id_token token"},
		ScopesSupported:                   []string{"openid", "profile", "email", "offline_access"},
		Issuer:                            base + "/v2.0",
		AuthorizationEndpoint:             base + "/oauth2/v2.0/authorize",
		DeviceAuthorizationEndpoint:       base + "/oauth2/v2.0/devicecode",
		EndSessionEndpoint:                base + "/oauth2/v2.0/logout",
		TenantRegionScope:                 "NA",
		CloudInstanceName:                 "graphsim",
		MSGraphHost:                       graphHost,
	})
}

// writeOAuthError answers with Entra ID's error body. The correlation ID is
// the request's client-request-id, as Entra ID echoes it.
func (s *Server) writeOAuthError(w http.ResponseWriter, r *http.Request, e *oauthError) {
	now := time.Now().UTC()
	traceID := newGUID()
	correlationID := r.Header.Get("client-request-id")
	if correlationID == "" {
		correlationID = newGUID()
	}
	stamp := now.Format("2006-01-02 15:04:05Z")
	desc := fmt.Sprintf("AADSTS%d: %s Trace ID: %s Correlation ID: %s Timestamp: %s", e.code, e.desc, traceID, correlationID, stamp)
	if e.status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	writeJSON(w, e.status, map[string]any{
		"error":             e.kind,
		"error_description": desc,
		"error_codes":       []int{e.code},
		"timestamp":         stamp,
		"trace_id":          traceID,
		"correlation_id":    correlationID,
		"error_uri":         fmt.Sprintf("%s/error?code=%d", s.AuthorityHost(), e.code),
	})
}

// writeJSON answers with v encoded as JSON. Entra ID and Graph both mark
// their answers uncacheable.
func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		http.Error(w, "graphsim: encode response", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store, no-cache")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}
