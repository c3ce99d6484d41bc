package graphsim

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Lifetimes of the delegated flow, as Entra ID sets them.
const (
	deviceCodeLifetime   = 15 * time.Minute
	refreshTokenLifetime = 90 * 24 * time.Hour
	userCodeAlphabet     = "BCDFGHJKLMNPQRSTVWXZ23456789"
)

// Errors returned by the methods that act for a signed-in user.
var (
	// ErrNoSuchDeviceCode means no pending, unexpired device code has the
	// given user code.
	ErrNoSuchDeviceCode = errors.New("graphsim: no pending device code with that user code")
	// ErrNoSuchUser means no user was registered with AddUser under the UPN.
	ErrNoSuchUser = errors.New("graphsim: no such user")
)

// deviceCodeGrant is one device authorization request awaiting its user.
type deviceCodeGrant struct {
	tenantID string
	appID    string
	scope    string
	userCode string
	created  time.Time
	expires  time.Time
	approved *user
	declined bool
}

// refreshGrant is what a refresh token stands for.
type refreshGrant struct {
	tenantID string
	appID    string
	user     *user
	scope    string
	issued   time.Time
	expires  time.Time
}

func (s *Server) serveDeviceCode(w http.ResponseWriter, r *http.Request, tenant string) {
	resp, oerr := s.deviceCode(r, tenant)
	if oerr != nil {
		s.writeOAuthError(w, r, oerr)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

// deviceCode starts a device authorization (RFC 8628) for a registered app.
func (s *Server) deviceCode(r *http.Request, tenant string) (any, *oauthError) {
	if r.Method != http.MethodPost {
		return nil, &oauthError{http.StatusMethodNotAllowed, "invalid_request", 900561, "The endpoint only accepts POST, OPTIONS requests."}
	}
	form, oerr := readForm(r)
	if oerr != nil {
		return nil, oerr
	}
	appID := strings.ToLower(form.Get("client_id"))
	scope := form.Get("scope")

	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.tokenDown:
		return nil, &oauthError{http.StatusServiceUnavailable, "temporarily_unavailable", 90033, "A transient error has occurred. Please try again."}
	case !s.dir.tenants[tenant]:
		return nil, errTenantNotFound(tenant)
	case appID == "":
		return nil, errMissingParam("client_id")
	case s.dir.apps[appID] == nil:
		return nil, &oauthError{http.StatusBadRequest, "unauthorized_client", 700016,
			fmt.Sprintf("Application with identifier '%s' was not found in the directory '%s'.", appID, tenant)}
	case strings.TrimSpace(scope) == "":
		return nil, errMissingParam("scope")
	}
	now := time.Now()
	g := &deviceCodeGrant{tenantID: tenant, appID: appID, scope: scope, userCode: s.newUserCodeLocked(), created: now, expires: now.Add(deviceCodeLifetime)}
	deviceCode := newOpaqueToken()
	s.tokens.codes[deviceCode] = g
	s.broadcastLocked()
	verify := s.AuthorityHost() + "/devicelogin"
	s.cfg.Logf("graphsim: device code issued tenant=%s app=%s", tenant, appID)
	return map[string]any{
		"user_code":        g.userCode,
		"device_code":      deviceCode,
		"verification_uri": verify,
		"expires_in":       expiresIn(deviceCodeLifetime),
		"interval":         5,
		"message":          fmt.Sprintf("To sign in, use a web browser to open the page %s and enter the code %s to authenticate.", verify, g.userCode),
	}, nil
}

// newUserCodeLocked returns a nine-character user code no pending device
// code uses.
func (s *Server) newUserCodeLocked() string {
	for {
		var b [9]byte
		_, _ = rand.Read(b[:])
		for i := range b {
			b[i] = userCodeAlphabet[int(b[i])%len(userCodeAlphabet)]
		}
		code := string(b[:])
		if s.codeByUserLocked(code) == nil {
			return code
		}
	}
}

func (s *Server) codeByUserLocked(userCode string) *deviceCodeGrant {
	for _, g := range s.tokens.codes {
		if strings.EqualFold(g.userCode, userCode) {
			return g
		}
	}
	return nil
}

// deviceCodeGrantLocked redeems a device code once its user has approved it.
func (s *Server) deviceCodeGrantLocked(form url.Values, tenant string, call *TokenCall, now time.Time) (any, *oauthError) {
	code := form.Get("device_code")
	if code == "" {
		return nil, errMissingParam("device_code")
	}
	g := s.tokens.codes[code]
	switch {
	case g == nil || g.tenantID != tenant || g.appID != call.AppID:
		return nil, &oauthError{http.StatusBadRequest, "bad_verification_code", 70018, "The provided value for the input parameter 'device_code' is not valid."}
	case now.After(g.expires):
		delete(s.tokens.codes, code)
		return nil, &oauthError{http.StatusBadRequest, "expired_token", 70019, "The provided value for the input parameter 'device_code' is not valid. This device code has expired."}
	case g.declined:
		delete(s.tokens.codes, code)
		return nil, &oauthError{http.StatusBadRequest, "authorization_declined", 70000, "The user declined the authorization request."}
	case g.approved == nil:
		return nil, &oauthError{http.StatusBadRequest, "authorization_pending", 70016, "OAuth 2.0 device flow error. Authorization is pending. Continue polling."}
	}
	delete(s.tokens.codes, code)
	call.UserID = g.approved.objectID
	return s.issueDelegatedLocked(tenant, call.AppID, g.approved, g.scope, now), nil
}

// refreshGrantLocked redeems a refresh token. A confidential client that
// sends a credential must send a valid one; a public client sends none.
func (s *Server) refreshGrantLocked(form url.Values, basicSecret, tenant string, a *app, call *TokenCall, now time.Time) (any, *oauthError) {
	rt := form.Get("refresh_token")
	if rt == "" {
		return nil, errMissingParam("refresh_token")
	}
	if form.Get("client_secret") != "" || form.Get("client_assertion") != "" || basicSecret != "" {
		cred, oerr := s.authenticateClientLocked(form, basicSecret, tenant, call.AppID, a, now)
		if oerr != nil {
			return nil, oerr
		}
		call.Credential = cred
	}
	g := s.tokens.refresh[rt]
	switch {
	case g == nil:
		return nil, &oauthError{http.StatusBadRequest, "invalid_grant", 9002313, "Invalid request. Request is malformed or invalid."}
	case g.tenantID != tenant || g.appID != call.AppID:
		return nil, &oauthError{http.StatusBadRequest, "invalid_grant", 70000, "The provided grant is invalid or malformed. It was issued to another client or tenant."}
	case now.After(g.expires):
		return nil, &oauthError{http.StatusBadRequest, "invalid_grant", 700082, "The refresh token has expired due to inactivity."}
	case !g.issued.After(g.user.signInsValidAfter):
		return nil, &oauthError{http.StatusBadRequest, "invalid_grant", 50173, "The provided grant has expired due to it being revoked, a fresh auth token is needed. The user might have changed or reset their password."}
	}
	call.UserID = g.user.objectID
	scope := form.Get("scope")
	if strings.TrimSpace(scope) == "" {
		scope = g.scope
	}
	return s.issueDelegatedLocked(tenant, call.AppID, g.user, scope, now), nil
}

// issueDelegatedLocked issues the access token, refresh token, ID token and
// client_info of a signed-in user, as MSAL needs them to cache an account
// and refresh it silently. The ID token is unsigned (alg "none"): MSAL reads
// it without verifying it, and nothing should trust it.
func (s *Server) issueDelegatedLocked(tenant, appID string, u *user, scope string, now time.Time) map[string]any {
	at := s.tokens.issueAccessLocked(&grant{tenantID: tenant, appID: appID, user: u, scope: scope, expires: now.Add(s.cfg.TokenLifetime)}, now)
	rt := newOpaqueToken()
	s.tokens.refresh[rt] = &refreshGrant{tenantID: tenant, appID: appID, user: u, scope: scope, issued: now, expires: now.Add(refreshTokenLifetime)}
	issuer := s.AuthorityHost() + "/" + url.PathEscape(tenant) + "/v2.0"
	idToken := unsignedJWT(map[string]any{
		"aud": appID, "iss": issuer, "iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(time.Hour).Unix(),
		"name": u.upn, "oid": u.objectID, "preferred_username": u.upn, "sub": u.objectID, "tid": tenant, "ver": "2.0",
	})
	clientInfo, _ := json.Marshal(map[string]string{"uid": u.objectID, "utid": tenant})
	lifetime := expiresIn(s.cfg.TokenLifetime)
	return map[string]any{
		"token_type":     "Bearer",
		"scope":          scope,
		"expires_in":     lifetime,
		"ext_expires_in": lifetime,
		"access_token":   at,
		"refresh_token":  rt,
		"id_token":       idToken,
		"client_info":    base64.RawURLEncoding.EncodeToString(clientInfo),
	}
}

func unsignedJWT(claims map[string]any) string {
	header := base64.RawURLEncoding.EncodeToString([]byte(`{"typ":"JWT","alg":"none"}`))
	body, _ := json.Marshal(claims)
	return header + "." + base64.RawURLEncoding.EncodeToString(body) + "."
}

// ApproveDeviceCode signs the user registered under upn in to the pending
// device code with userCode, as the user would on the verification page; the
// client's next poll gets its tokens.
func (s *Server) ApproveDeviceCode(userCode, upn string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.dir.users[strings.ToLower(upn)]
	if u == nil {
		return fmt.Errorf("graphsim: approve device code: %w", ErrNoSuchUser)
	}
	g := s.pendingCodeLocked(userCode)
	if g == nil {
		return fmt.Errorf("graphsim: approve device code: %w", ErrNoSuchDeviceCode)
	}
	g.approved = u
	s.broadcastLocked()
	return nil
}

// DeclineDeviceCode declines the pending device code with userCode; the
// client's next poll gets authorization_declined.
func (s *Server) DeclineDeviceCode(userCode string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.pendingCodeLocked(userCode)
	if g == nil {
		return fmt.Errorf("graphsim: decline device code: %w", ErrNoSuchDeviceCode)
	}
	g.declined = true
	s.broadcastLocked()
	return nil
}

func (s *Server) pendingCodeLocked(userCode string) *deviceCodeGrant {
	g := s.codeByUserLocked(userCode)
	if g == nil || g.approved != nil || g.declined || time.Now().After(g.expires) {
		return nil
	}
	return g
}

// WaitDeviceCode waits until a device code is pending (requested, neither
// approved nor declined, unexpired) and returns the user code of the oldest
// one. It returns ctx's error if ctx ends first.
func (s *Server) WaitDeviceCode(ctx context.Context) (string, error) {
	var userCode string
	err := s.waitFor(ctx, func() bool {
		var oldest *deviceCodeGrant
		now := time.Now()
		for _, g := range s.tokens.codes {
			if g.approved != nil || g.declined || now.After(g.expires) {
				continue
			}
			if oldest == nil || g.created.Before(oldest.created) {
				oldest = g
			}
		}
		if oldest == nil {
			return false
		}
		userCode = oldest.userCode
		return true
	})
	if err != nil {
		return "", fmt.Errorf("graphsim: wait for a device code: %w", err)
	}
	return userCode, nil
}

// RevokeUserSessions invalidates every refresh token issued to the user so
// far, as an administrator revoking sessions or a password reset does.
// Access tokens stay valid until they expire; later sign-ins work.
func (s *Server) RevokeUserSessions(upn string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.dir.users[strings.ToLower(upn)]
	if u == nil {
		return fmt.Errorf("graphsim: revoke sessions: %w", ErrNoSuchUser)
	}
	u.signInsValidAfter = time.Now()
	return nil
}
