package graphsim

import (
	"net/url"
	"slices"
	"strings"
	"time"
)

// API is an app registration that exposes an API, such as the HTTP gateway:
// a client app gets an access token for it with the client credentials
// grant and the scope "<IdentifierURI>/.default" (or "<AppID>/.default").
// Unlike the Graph tokens, which are opaque, these are RS256-signed JWTs in
// Entra ID's v2.0 access token format, verifiable against the keys the
// authority publishes (see [Server.JWKSURL]).
type API struct {
	// AppID is the API's application (client) ID, a GUID: the aud claim of
	// its v2.0 access tokens. Required.
	AppID string
	// IdentifierURI is the API's application ID URI, e.g.
	// "api://recoverpasscode". Optional: without it a client asks for
	// "<AppID>/.default".
	IdentifierURI string
	// TokenLifetime is the lifetime of its access tokens. Defaults to
	// Config.TokenLifetime. A negative value issues tokens that expired that
	// long ago, for tests of expiry.
	TokenLifetime time.Duration
}

// apiState is an API registration with the app roles assigned to client
// apps. Guarded by Server.mu.
type apiState struct {
	API
	roles map[string][]string // client app ID → assigned app role values
}

// AddAPI registers api, or replaces its settings keeping its role
// assignments. Its tokens are issued in every registered tenant.
// It makes the first signing key, if there is none yet, so that issuing a
// token never waits for one.
func (s *Server) AddAPI(api API) {
	if err := s.signing.ensure(); err != nil {
		panic(err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	id := strings.ToLower(api.AppID)
	api.AppID = id
	if old := s.dir.apis[id]; old != nil {
		old.API = api
		return
	}
	s.dir.apis[id] = &apiState{API: api, roles: map[string][]string{}}
}

// AssignAppRole grants clientID the app roles (their values, e.g.
// "Jobs.Submit") of the API registered as apiAppID, as an administrator
// consenting to an application permission does: they appear in the roles
// claim of the client's tokens for that API from now on. It panics when the
// API is not registered, a mistake in the test.
func (s *Server) AssignAppRole(clientID, apiAppID string, roles ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	api := s.dir.apis[strings.ToLower(apiAppID)]
	if api == nil {
		panic("graphsim: AssignAppRole: API " + apiAppID + " is not registered (AddAPI)")
	}
	client := strings.ToLower(clientID)
	for _, r := range roles {
		if !slices.Contains(api.roles[client], r) {
			api.roles[client] = append(api.roles[client], r)
		}
	}
}

// apiForResourceLocked returns the API a "<resource>/.default" scope names,
// by its identifier URI or its app ID (case-insensitively), or nil.
func (s *Server) apiForResourceLocked(resource string) *apiState {
	for _, api := range s.dir.apis {
		if strings.EqualFold(resource, api.AppID) || (api.IdentifierURI != "" && strings.EqualFold(resource, api.IdentifierURI)) {
			return api
		}
	}
	return nil
}

// Issuer is the iss claim of the v2.0 access tokens issued in tenantID, and
// the issuer of its discovery document: AuthorityHost()+"/"+tenant+"/v2.0",
// with the tenant in lower case as Entra ID writes it.
func (s *Server) Issuer(tenantID string) string {
	return s.AuthorityHost() + "/" + url.PathEscape(strings.ToLower(tenantID)) + "/v2.0"
}

// JWKSURL is where the authority publishes the keys that sign its access
// tokens, the jwks_uri of tenantID's discovery document.
func (s *Server) JWKSURL(tenantID string) string {
	return s.AuthorityHost() + "/" + url.PathEscape(strings.ToLower(tenantID)) + "/discovery/v2.0/keys"
}

// issueAPITokenLocked issues a signed v2.0 app-only access token for api to
// the client appID in tenant, with the claims Entra ID puts in one.
func (s *Server) issueAPITokenLocked(tenant, appID, credential string, api *apiState, now time.Time) (map[string]any, *oauthError) {
	lifetime := api.TokenLifetime
	if lifetime == 0 {
		lifetime = s.cfg.TokenLifetime
	}
	iat := now
	if lifetime < 0 { // already expired: issued that long before now, an hour lived
		iat = now.Add(lifetime - time.Hour)
		lifetime = time.Hour
	}
	acr := "1" // client secret
	if credential == CredentialCertificate || credential == CredentialFederated {
		acr = "2"
	}
	sp := s.dir.servicePrincipalLocked(tenant, appID)
	claims := map[string]any{
		"aud":    api.AppID,
		"iss":    s.Issuer(tenant),
		"iat":    iat.Unix(),
		"nbf":    iat.Unix(),
		"exp":    iat.Add(lifetime).Unix(),
		"azp":    appID,
		"azpacr": acr,
		"idtyp":  "app",
		"oid":    sp,
		"sub":    sp,
		"tid":    tenant,
		"uti":    newOpaqueToken()[:22],
		"ver":    "2.0",
	}
	if roles := api.roles[appID]; len(roles) > 0 {
		claims["roles"] = append([]string(nil), roles...)
	}
	token, err := s.signing.sign(claims)
	if err != nil {
		return nil, &oauthError{500, "server_error", 50000, "The token could not be signed."}
	}
	left := iat.Add(lifetime).Sub(now)
	return map[string]any{
		"token_type":     "Bearer",
		"expires_in":     max(expiresIn(left), 0),
		"ext_expires_in": max(expiresIn(left), 0),
		"access_token":   token,
	}, nil
}

// servicePrincipalLocked returns the object ID of appID's service principal
// in tenant: the oid and sub of its app-only tokens, stable per tenant.
func (d *directory) servicePrincipalLocked(tenant, appID string) string {
	k := tenant + "/" + appID
	if id, ok := d.principals[k]; ok {
		return id
	}
	id := newGUID()
	d.principals[k] = id
	return id
}
