package graphsim

import (
	"crypto/subtle"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Grant types the token endpoint serves. MSAL Go sends "device_code"; the
// RFC 8628 URN is accepted too.
const (
	grantClientCredentials = "client_credentials"
	grantRefreshToken      = "refresh_token"
	grantDeviceCode        = "device_code"
	grantDeviceCodeURN     = "urn:ietf:params:oauth:grant-type:device_code"
	clientAssertionType    = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
)

// Credential kinds recorded on TokenCall.
const (
	CredentialSecret      = "secret"
	CredentialCertificate = "certificate"
	CredentialFederated   = "federated"
)

// TokenCall is one request to the token endpoint, as the Server saw it.
// It never holds a secret, an assertion or a token.
type TokenCall struct {
	// Time is when the request arrived.
	Time time.Time
	// TenantID is the tenant in the request's path, in lower case.
	TenantID string
	// AppID is the request's client_id, in lower case.
	AppID string
	// GrantType is the request's grant_type.
	GrantType string
	// Credential is how the client authenticated: CredentialSecret,
	// CredentialCertificate, CredentialFederated, or "" for a public client
	// or a request rejected before authentication succeeded.
	Credential string
	// Status is the HTTP status answered.
	Status int
	// Error is the OAuth error answered, "" on success.
	Error string
	// ErrorCode is the AADSTS number answered, 0 on success.
	ErrorCode int
	// UserID is the signed-in user's object ID for a delegated grant.
	UserID string
}

// grant is what an access token stands for. user is nil for app-only tokens.
type grant struct {
	tenantID string
	appID    string
	user     *user
	scope    string
	expires  time.Time
}

// tokenStore maps the opaque tokens and codes the authority issued to what
// they stand for. Guarded by Server.mu.
type tokenStore struct {
	access  map[string]*grant
	refresh map[string]*refreshGrant
	codes   map[string]*deviceCodeGrant // by device code
	issued  int
}

func newTokenStore() tokenStore {
	return tokenStore{
		access:  map[string]*grant{},
		refresh: map[string]*refreshGrant{},
		codes:   map[string]*deviceCodeGrant{},
	}
}

// issueAccessLocked stores g under a new access token and returns it. Every
// so often it forgets expired tokens, so a long --dev session stays small.
func (t *tokenStore) issueAccessLocked(g *grant, now time.Time) string {
	t.issued++
	if t.issued%1024 == 0 {
		for tok, old := range t.access {
			if now.After(old.expires) {
				delete(t.access, tok)
			}
		}
	}
	tok := newOpaqueToken()
	t.access[tok] = g
	return tok
}

// SetTokenEndpointDown makes the token and device code endpoints answer 503
// temporarily_unavailable (with Retry-After: 1) while down is true, as during
// an Entra ID outage. Discovery keeps answering, and tokens already issued
// stay valid at Graph.
func (s *Server) SetTokenEndpointDown(down bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tokenDown = down
}

// ExpireTokens makes every access token issued so far expired, so the next
// Graph call with one of them answers 401 InvalidAuthenticationToken.
// Refresh tokens are unaffected.
func (s *Server) ExpireTokens() {
	s.mu.Lock()
	defer s.mu.Unlock()
	past := time.Now().Add(-time.Second)
	for _, g := range s.tokens.access {
		g.expires = past
	}
}

// TokenCalls returns a copy of every token endpoint request so far, in
// arrival order.
func (s *Server) TokenCalls() []TokenCall {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]TokenCall(nil), s.tokenCalls...)
}

// serveToken answers the token endpoint and records the request before the
// answer leaves, so a client holding the answer finds it in TokenCalls.
func (s *Server) serveToken(w http.ResponseWriter, r *http.Request, tenant string) {
	call := TokenCall{Time: time.Now(), TenantID: tenant}
	resp, oerr := s.token(r, tenant, &call)
	call.Status = http.StatusOK
	if oerr != nil {
		call.Status, call.Error, call.ErrorCode = oerr.status, oerr.kind, oerr.code
	}
	s.mu.Lock()
	s.tokenCalls = append(s.tokenCalls, call)
	s.mu.Unlock()
	s.cfg.Logf("graphsim: token tenant=%s app=%s grant=%s credential=%s status=%d error=%s code=%d",
		call.TenantID, call.AppID, call.GrantType, call.Credential, call.Status, call.Error, call.ErrorCode)
	if oerr != nil {
		s.writeOAuthError(w, r, oerr)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

// token decides a token request: the answer's body, or an error.
func (s *Server) token(r *http.Request, tenant string, call *TokenCall) (any, *oauthError) {
	if r.Method != http.MethodPost {
		return nil, &oauthError{http.StatusMethodNotAllowed, "invalid_request", 900561, "The endpoint only accepts POST, OPTIONS requests."}
	}
	form, oerr := readForm(r)
	if oerr != nil {
		return nil, oerr
	}
	call.GrantType = form.Get("grant_type")
	clientID, basicSecret, _ := r.BasicAuth()
	if id := form.Get("client_id"); id != "" {
		clientID = id
	}
	call.AppID = strings.ToLower(clientID)

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tokenDown {
		return nil, &oauthError{http.StatusServiceUnavailable, "temporarily_unavailable", 90033, "A transient error has occurred. Please try again."}
	}
	if !s.dir.tenants[tenant] {
		return nil, errTenantNotFound(tenant)
	}
	if clientID == "" {
		return nil, errMissingParam("client_id")
	}
	a := s.dir.apps[call.AppID]
	if a == nil {
		return nil, &oauthError{http.StatusBadRequest, "unauthorized_client", 700016,
			fmt.Sprintf("Application with identifier '%s' was not found in the directory '%s'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant.", clientID, tenant)}
	}
	now := time.Now()
	switch call.GrantType {
	case grantClientCredentials:
		return s.clientCredentialsLocked(form, basicSecret, tenant, a, call, now)
	case grantDeviceCode, grantDeviceCodeURN:
		return s.deviceCodeGrantLocked(form, tenant, call, now)
	case grantAuthorizationCode:
		return s.authorizationCodeGrantLocked(form, basicSecret, tenant, a, call, now)
	case grantRefreshToken:
		return s.refreshGrantLocked(form, basicSecret, tenant, a, call, now)
	case "":
		return nil, errMissingParam("grant_type")
	default:
		return nil, &oauthError{http.StatusBadRequest, "unsupported_grant_type", 70003,
			fmt.Sprintf("The app requested an unsupported grant type '%s'.", call.GrantType)}
	}
}

func errMissingParam(name string) *oauthError {
	return &oauthError{http.StatusBadRequest, "invalid_request", 900144,
		fmt.Sprintf("The request body must contain the following parameter: '%s'.", name)}
}

// readForm reads a form-encoded request body of at most 64 KiB.
func readForm(r *http.Request) (url.Values, *oauthError) {
	ct := r.Header.Get("Content-Type")
	if !strings.HasPrefix(strings.ToLower(ct), "application/x-www-form-urlencoded") {
		return nil, &oauthError{http.StatusBadRequest, "invalid_request", 900144, "The request body must be form-encoded (application/x-www-form-urlencoded)."}
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	if err != nil {
		return nil, &oauthError{http.StatusBadRequest, "invalid_request", 900144, "The request body could not be read."}
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return nil, &oauthError{http.StatusBadRequest, "invalid_request", 900144, "The request body is not a valid form."}
	}
	return form, nil
}

// clientCredentialsLocked serves the client credentials grant: an app-only
// token for the resource named by a "<resource>/.default" scope.
func (s *Server) clientCredentialsLocked(form url.Values, basicSecret, tenant string, a *app, call *TokenCall, now time.Time) (any, *oauthError) {
	cred, oerr := s.authenticateClientLocked(form, basicSecret, tenant, call.AppID, a, now)
	if oerr != nil {
		return nil, oerr
	}
	call.Credential = cred
	scope, oerr := defaultScope(form.Get("scope"))
	if oerr != nil {
		return nil, oerr
	}
	if api := s.apiForResourceLocked(strings.TrimSuffix(scope, "/.default")); api != nil {
		return s.issueAPITokenLocked(tenant, call.AppID, cred, api, now)
	}
	g := &grant{tenantID: tenant, appID: call.AppID, scope: scope, expires: now.Add(s.cfg.TokenLifetime)}
	lifetime := expiresIn(s.cfg.TokenLifetime)
	return map[string]any{
		"token_type":     "Bearer",
		"expires_in":     lifetime,
		"ext_expires_in": lifetime,
		"access_token":   s.tokens.issueAccessLocked(g, now),
	}, nil
}

// defaultScope returns the one "<resource>/.default" scope of a client
// credentials request. MSAL adds openid, profile and offline_access to every
// request; Entra ID ignores them here, and so does this.
func defaultScope(scopes string) (string, *oauthError) {
	var resource []string
	for _, sc := range strings.Fields(scopes) {
		switch sc {
		case "openid", "profile", "offline_access", "email":
			continue
		}
		resource = append(resource, sc)
	}
	if len(resource) == 0 {
		return "", &oauthError{http.StatusBadRequest, "invalid_request", 90014, "The required field 'scope' is missing from the credential. Ensure that you have all the necessary parameters for the login request."}
	}
	if len(resource) > 1 || !strings.HasSuffix(resource[0], "/.default") {
		return "", &oauthError{http.StatusBadRequest, "invalid_scope", 1002012,
			fmt.Sprintf("The provided value for scope %s is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI).", strings.Join(resource, " "))}
	}
	return resource[0], nil
}

// authenticateClientLocked checks a confidential client's credential: a
// client_secret (in the form or HTTP Basic) or a client_assertion, which is
// either a registered federated token or a JWT signed by a registered
// certificate. It returns the kind of credential used.
func (s *Server) authenticateClientLocked(form url.Values, basicSecret, tenant, appID string, a *app, now time.Time) (string, *oauthError) {
	assertion := form.Get("client_assertion")
	secret := form.Get("client_secret")
	if secret == "" {
		secret = basicSecret
	}
	switch {
	case assertion != "":
		if form.Get("client_assertion_type") != clientAssertionType {
			return "", &oauthError{http.StatusBadRequest, "invalid_request", 50027,
				"Invalid JWT token. The client_assertion_type must be urn:ietf:params:oauth:client-assertion-type:jwt-bearer."}
		}
		if a.federated[assertion] {
			return CredentialFederated, nil
		}
		if len(a.certs) == 0 {
			return "", &oauthError{http.StatusUnauthorized, "invalid_client", 70021, "No matching federated identity record found for presented assertion."}
		}
		if oerr := verifyClientAssertion(assertion, appID, s.assertionAudiences(tenant), a.certs, now); oerr != nil {
			return "", oerr
		}
		return CredentialCertificate, nil
	case secret != "":
		if a.secret == "" || subtle.ConstantTimeCompare([]byte(secret), []byte(a.secret)) != 1 {
			return "", &oauthError{http.StatusUnauthorized, "invalid_client", 7000215,
				fmt.Sprintf("Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '%s'.", appID)}
		}
		return CredentialSecret, nil
	default:
		return "", &oauthError{http.StatusUnauthorized, "invalid_client", 7000218,
			"The request body must contain the following parameter: 'client_assertion' or 'client_secret'."}
	}
}

// assertionAudiences are the aud values Entra ID accepts in a client
// assertion for tenant: its token endpoints and its issuer.
func (s *Server) assertionAudiences(tenant string) []string {
	base := s.AuthorityHost() + "/" + url.PathEscape(tenant)
	return []string{base + "/oauth2/v2.0/token", base + "/oauth2/token", base + "/v2.0"}
}

// expiresIn is a lifetime in whole seconds, rounded up so that a sub-second
// test lifetime is not announced as already expired.
func expiresIn(d time.Duration) int64 {
	return int64(math.Ceil(d.Seconds()))
}
