package graphsim

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"time"
)

// Lifetimes of the authorization code flow, as Entra ID sets them.
const (
	authRequestLifetime = 15 * time.Minute
	authCodeLifetime    = 10 * time.Minute
	idTokenLifetime     = time.Hour
)

// grantAuthorizationCode is the grant that redeems an authorization code.
const grantAuthorizationCode = "authorization_code"

// webSignIn is the state of the OpenID Connect authorization code flow:
// the redirect URIs of web apps, the app roles assigned to users, the sign-in
// pages shown and the codes issued. Guarded by Server.mu.
type webSignIn struct {
	redirects map[string]map[string]bool     // app → registered redirect URIs
	userRoles map[string]map[string][]string // app → lower-case UPN → app role values
	requests  map[string]*authRequest        // sign-in pages shown, by id
	codes     map[string]*authCode           // codes issued, by code
}

func newWebSignIn() webSignIn {
	return webSignIn{
		redirects: map[string]map[string]bool{},
		userRoles: map[string]map[string][]string{},
		requests:  map[string]*authRequest{},
		codes:     map[string]*authCode{},
	}
}

// authRequest is one authorization request awaiting its user.
type authRequest struct {
	tenantID, appID, redirectURI, scope, state, nonce string
	challenge                                         string // the S256 code_challenge, "" without PKCE
	expires                                           time.Time
}

// authCode is an authorization code: the request and the user who signed in.
type authCode struct {
	authRequest
	user    *user
	expires time.Time
}

// AddRedirectURI registers uri as a redirect URI of clientID's web platform:
// the authorization endpoint sends codes only to registered URIs (others
// are AADSTS50011), compared exactly as Entra ID does. The app is
// registered if it was not.
func (s *Server) AddRedirectURI(clientID, uri string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id := strings.ToLower(clientID)
	s.dir.appLocked(id)
	if s.web.redirects[id] == nil {
		s.web.redirects[id] = map[string]bool{}
	}
	s.web.redirects[id][uri] = true
}

// AssignUserAppRole assigns app roles (their values, e.g. "Console.Read")
// of the application clientID to the user registered under upn, as an
// administrator does under Enterprise applications → Users and groups: they
// appear in the roles claim of the ID tokens issued to the user for that
// app.
func (s *Server) AssignUserAppRole(upn, clientID string, roles ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id := strings.ToLower(clientID)
	if s.web.userRoles[id] == nil {
		s.web.userRoles[id] = map[string][]string{}
	}
	key := strings.ToLower(upn)
	for _, r := range roles {
		if !slices.Contains(s.web.userRoles[id][key], r) {
			s.web.userRoles[id][key] = append(s.web.userRoles[id][key], r)
		}
	}
}

// signInPage is the page the authorization endpoint shows, standing in for
// Entra ID's sign-in: a button per test user (a user registered with an
// empty password signs in with one click) and a form for the others.
var signInPage = template.Must(template.New("signin").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign in – graphsim</title>
<style>body{font-family:system-ui,sans-serif;max-width:28rem;margin:3rem auto;padding:0 1rem;color:#1b1b1b}
label{display:block;margin:.8rem 0}input{width:100%;padding:.5rem;box-sizing:border-box}
button{padding:.6rem 1rem;margin:.3rem 0;font-size:1rem;cursor:pointer;border:1px solid #0b5cad;background:#0b5cad;color:#fff;border-radius:4px}
.alt{background:#fff;color:#0b5cad}p.err{color:#a00}</style>
</head><body>
<h1>Sign in</h1>
<p>graphsim, the Entra ID double, signs you in to tenant <code>{{.Tenant}}</code>.</p>
{{if .Error}}<p class="err" role="alert">{{.Error}}</p>{{end}}
{{if .TestUsers}}<h2>Test users</h2>
{{range .TestUsers}}<form method="post"><input type="hidden" name="request" value="{{$.Request}}"><input type="hidden" name="username" value="{{.}}">
<button type="submit">Sign in as {{.}}</button></form>
{{end}}{{end}}
<h2>Another account</h2>
<form method="post"><input type="hidden" name="request" value="{{.Request}}">
<label>User principal name <input name="username" autocomplete="username" required></label>
<label>Password <input name="password" type="password" autocomplete="current-password"></label>
<button type="submit" class="alt">Sign in</button></form>
</body></html>
`))

type signInView struct {
	Tenant, Request, Error string
	TestUsers              []string
}

// serveAuthorize is the authorization endpoint: GET checks the request and
// shows the sign-in page; POST signs the chosen user in and redirects to
// the app with a code.
func (s *Server) serveAuthorize(w http.ResponseWriter, r *http.Request, tenant string) {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		s.startAuthorization(w, r, tenant)
	case http.MethodPost:
		s.finishAuthorization(w, r, tenant)
	default:
		w.Header().Set("Allow", "GET, HEAD, POST")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	}
}

func (s *Server) startAuthorization(w http.ResponseWriter, r *http.Request, tenant string) {
	q := r.URL.Query()
	req := authRequest{
		tenantID: tenant, appID: strings.ToLower(q.Get("client_id")), redirectURI: q.Get("redirect_uri"),
		scope: q.Get("scope"), state: q.Get("state"), nonce: q.Get("nonce"), challenge: q.Get("code_challenge"),
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	// Errors before the redirect URI is trusted are shown, never redirected.
	switch {
	case !s.dir.tenants[tenant]:
		s.authorizeErrorPage(w, errTenantNotFound(tenant))
		return
	case req.appID == "" || s.dir.apps[req.appID] == nil:
		s.authorizeErrorPage(w, &oauthError{http.StatusBadRequest, "unauthorized_client", 700016, fmt.Sprintf("Application with identifier '%s' was not found in the directory '%s'.", q.Get("client_id"), tenant)})
		return
	case !s.web.redirects[req.appID][req.redirectURI]:
		s.authorizeErrorPage(w, &oauthError{http.StatusBadRequest, "invalid_request", 50011, fmt.Sprintf("The redirect URI '%s' specified in the request does not match the redirect URIs configured for the application '%s'.", req.redirectURI, req.appID)})
		return
	}
	switch {
	case q.Get("response_type") != "code":
		redirectError(w, r, req, "unsupported_response_type", "AADSTS70005: response_type must be 'code'.")
		return
	case !slices.Contains(strings.Fields(req.scope), "openid"):
		redirectError(w, r, req, "invalid_scope", "AADSTS900144: The scope must include 'openid'.")
		return
	case req.challenge != "" && q.Get("code_challenge_method") != "S256":
		redirectError(w, r, req, "invalid_request", "AADSTS501491: code_challenge_method must be S256.")
		return
	}
	now := time.Now()
	req.expires = now.Add(authRequestLifetime)
	for id, old := range s.web.requests {
		if now.After(old.expires) {
			delete(s.web.requests, id)
		}
	}
	id := newOpaqueToken()
	s.web.requests[id] = &req
	view := signInView{Tenant: tenant, Request: id}
	for _, u := range s.dir.users {
		if u.password == "" {
			view.TestUsers = append(view.TestUsers, u.upn)
		}
	}
	sort.Strings(view.TestUsers)
	renderSignIn(w, http.StatusOK, view)
}

func (s *Server) finishAuthorization(w http.ResponseWriter, r *http.Request, tenant string) {
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	if err := r.ParseForm(); err != nil {
		http.Error(w, "the form could not be read", http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	id := r.PostForm.Get("request")
	req := s.web.requests[id]
	if req == nil || req.tenantID != tenant || time.Now().After(req.expires) {
		s.authorizeErrorPage(w, &oauthError{http.StatusBadRequest, "invalid_request", 50058, "The sign-in request is not known or has expired: start again from the application."})
		return
	}
	u := s.dir.users[strings.ToLower(strings.TrimSpace(r.PostForm.Get("username")))]
	if u == nil || subtle.ConstantTimeCompare([]byte(r.PostForm.Get("password")), []byte(u.password)) != 1 {
		renderSignIn(w, http.StatusBadRequest, signInView{Tenant: tenant, Request: id, Error: "The user name or password is incorrect."})
		return
	}
	delete(s.web.requests, id)
	code := newOpaqueToken()
	s.web.codes[code] = &authCode{authRequest: *req, user: u, expires: time.Now().Add(authCodeLifetime)}
	s.cfg.Logf("graphsim: authorization code issued tenant=%s app=%s", tenant, req.appID)
	target, _ := url.Parse(req.redirectURI)
	v := target.Query()
	v.Set("code", code)
	if req.state != "" {
		v.Set("state", req.state)
	}
	target.RawQuery = v.Encode()
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, target.String(), http.StatusFound)
}

// redirectError sends an authorization error back to the app's redirect URI.
func redirectError(w http.ResponseWriter, r *http.Request, req authRequest, kind, desc string) {
	target, _ := url.Parse(req.redirectURI)
	v := target.Query()
	v.Set("error", kind)
	v.Set("error_description", desc)
	if req.state != "" {
		v.Set("state", req.state)
	}
	target.RawQuery = v.Encode()
	http.Redirect(w, r, target.String(), http.StatusFound)
}

func (s *Server) authorizeErrorPage(w http.ResponseWriter, e *oauthError) {
	renderSignIn(w, e.status, signInView{Error: fmt.Sprintf("AADSTS%d: %s", e.code, e.desc)})
}

func renderSignIn(w http.ResponseWriter, status int, v signInView) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Frame-Options", "DENY")
	w.WriteHeader(status)
	_ = signInPage.Execute(w, v)
}

// authorizationCodeGrantLocked redeems an authorization code, once: the
// client must be the one the code was issued to and authenticate if it
// has a credential, the redirect URI must be the request's, and the
// code_verifier must hash to the request's code_challenge (PKCE, RFC 7636).
func (s *Server) authorizationCodeGrantLocked(form url.Values, basicSecret, tenant string, a *app, call *TokenCall, now time.Time) (any, *oauthError) {
	if a.secret != "" || len(a.certs) > 0 || len(a.federated) > 0 {
		cred, oerr := s.authenticateClientLocked(form, basicSecret, tenant, call.AppID, a, now)
		if oerr != nil {
			return nil, oerr
		}
		call.Credential = cred
	}
	raw := form.Get("code")
	if raw == "" {
		return nil, errMissingParam("code")
	}
	c := s.web.codes[raw]
	invalid := func(code int, desc string) (any, *oauthError) {
		return nil, &oauthError{http.StatusBadRequest, "invalid_grant", code, desc}
	}
	switch {
	case c == nil:
		return invalid(54005, "OAuth2 Authorization code was already redeemed, please retry with a new valid code or use an existing refresh token.")
	case c.tenantID != tenant || c.appID != call.AppID:
		return invalid(70000, "The provided authorization code was issued to another client or tenant.")
	case now.After(c.expires):
		delete(s.web.codes, raw)
		return invalid(70008, "The provided authorization code or refresh token has expired due to inactivity. Send a new interactive authorization request for this user and resource.")
	case form.Get("redirect_uri") != c.redirectURI:
		return invalid(50148, "The redirect_uri does not match the one of the authorization request.")
	case c.challenge != "" && !pkceMatches(form.Get("code_verifier"), c.challenge):
		delete(s.web.codes, raw)
		return invalid(501481, "The Code_Verifier does not match the code_challenge supplied in the authorization request.")
	}
	delete(s.web.codes, raw)
	call.UserID = c.user.objectID
	resp := s.issueDelegatedLocked(tenant, call.AppID, c.user, c.scope, now)
	idToken, err := s.signing.sign(s.idTokenClaimsLocked(c, now))
	if err != nil {
		return nil, &oauthError{http.StatusInternalServerError, "server_error", 50000, "The token could not be signed."}
	}
	resp["id_token"] = idToken
	return resp, nil
}

// idTokenClaimsLocked are the claims of the v2.0 ID token of a signed-in
// user, with the app roles assigned to them for the app.
func (s *Server) idTokenClaimsLocked(c *authCode, now time.Time) map[string]any {
	claims := map[string]any{
		"aud": c.appID, "iss": s.Issuer(c.tenantID), "iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(idTokenLifetime).Unix(),
		"name": c.user.upn, "oid": c.user.objectID, "preferred_username": c.user.upn, "sub": c.user.objectID,
		"tid": c.tenantID, "ver": "2.0",
	}
	if c.nonce != "" {
		claims["nonce"] = c.nonce
	}
	if roles := s.web.userRoles[c.appID][strings.ToLower(c.user.upn)]; len(roles) > 0 {
		claims["roles"] = append([]string(nil), roles...)
	}
	return claims
}

// pkceMatches reports whether verifier's S256 hash is challenge.
func pkceMatches(verifier, challenge string) bool {
	if verifier == "" {
		return false
	}
	sum := sha256.Sum256([]byte(verifier))
	return subtle.ConstantTimeCompare([]byte(base64.RawURLEncoding.EncodeToString(sum[:])), []byte(challenge)) == 1
}
