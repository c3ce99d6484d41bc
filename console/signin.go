package console

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// loginLifetime bounds a sign-in between the redirect and the callback.
const loginLifetime = 10 * time.Minute

// idClaims are the claims of the ID token the console reads.
type idClaims struct {
	Name  string   `json:"name"`
	UPN   string   `json:"preferred_username"`
	OID   string   `json:"oid"`
	Tid   string   `json:"tid"`
	Roles []string `json:"roles"`
}

// oidcProvider runs discovery on first use, and again after a failure.
func (s *Server) oidcProvider(ctx context.Context) (*oidc.Provider, *oidc.IDTokenVerifier, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.provider != nil {
		return s.provider, s.verifier, nil
	}
	keysCtx := oidc.ClientContext(context.WithoutCancel(ctx), s.cfg.HTTPClient)
	dctx, cancel := context.WithTimeout(keysCtx, 10*time.Second)
	defer cancel()
	p, err := oidc.NewProvider(dctx, s.issuer)
	if err != nil {
		return nil, nil, err
	}
	s.provider = p
	s.verifier = p.VerifierContext(keysCtx, &oidc.Config{ClientID: s.cfg.ClientID, SupportedSigningAlgs: []string{oidc.RS256}})
	return s.provider, s.verifier, nil
}

// signIn sends the browser to Entra ID with a fresh state, nonce and PKCE
// verifier, kept in the sealed login cookie until the callback.
func (s *Server) signIn(w http.ResponseWriter, r *http.Request) {
	p, _, err := s.oidcProvider(r.Context())
	if err != nil {
		s.log.Warn().Err(err).Msg("Entra ID discovery failed")
		s.renderError(w, r, nil, http.StatusServiceUnavailable, "Entra ID cannot be reached to sign you in ("+s.issuer+"): try again shortly.")
		return
	}
	l := login{State: randomText(), Nonce: randomText(), Verifier: oauth2.GenerateVerifier(), Next: localPath(r.URL.Query().Get("next")), Expires: time.Now().Add(loginLifetime).Unix()}
	value, err := s.seal.seal(loginCookie, l)
	if err != nil {
		s.renderError(w, r, nil, http.StatusInternalServerError, "The sign-in could not be started.")
		return
	}
	http.SetCookie(w, cookie(loginCookie, value, time.Unix(l.Expires, 0)))
	conf := s.oauth
	conf.Endpoint = p.Endpoint()
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, conf.AuthCodeURL(l.State, oauth2.S256ChallengeOption(l.Verifier), oidc.Nonce(l.Nonce)), http.StatusSeeOther)
}

// callback redeems the code with the PKCE verifier, verifies the ID token
// (signature, issuer, audience, expiry, nonce, tenant) and starts the
// session.
func (s *Server) callback(w http.ResponseWriter, r *http.Request) {
	fail := func(status int, msg string) {
		http.SetCookie(w, cookie(loginCookie, "", time.Time{}))
		s.renderError(w, r, nil, status, msg)
	}
	q := r.URL.Query()
	c, err := r.Cookie(loginCookie)
	var l login
	if err != nil || s.seal.open(loginCookie, c.Value, &l) != nil || time.Now().Unix() > l.Expires {
		fail(http.StatusBadRequest, "This sign-in was not started here, or took too long: sign in again.")
		return
	}
	if q.Get("state") != l.State {
		fail(http.StatusBadRequest, "The sign-in's state does not match: sign in again.")
		return
	}
	if e := q.Get("error"); e != "" {
		fail(http.StatusForbidden, "Entra ID did not sign you in: "+e+": "+truncate(q.Get("error_description"), 300))
		return
	}
	p, v, err := s.oidcProvider(r.Context())
	if err != nil {
		fail(http.StatusServiceUnavailable, "Entra ID cannot be reached: try again shortly.")
		return
	}
	conf := s.oauth
	conf.Endpoint = p.Endpoint()
	ctx, cancel := context.WithTimeout(oidc.ClientContext(r.Context(), s.cfg.HTTPClient), 15*time.Second)
	defer cancel()
	tok, err := conf.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(l.Verifier))
	if err != nil {
		s.log.Warn().Str("error", exchangeFailure(err)).Msg("sign-in: the code was not redeemed")
		fail(http.StatusForbidden, "Entra ID did not redeem the sign-in code: "+exchangeFailure(err))
		return
	}
	raw, _ := tok.Extra("id_token").(string)
	idt, err := v.Verify(ctx, raw)
	if err != nil || idt.Nonce != l.Nonce {
		fail(http.StatusForbidden, "The ID token Entra ID returned is not valid for this console.")
		return
	}
	var claims idClaims
	if err := idt.Claims(&claims); err != nil || !strings.EqualFold(claims.Tid, s.cfg.TenantID) {
		fail(http.StatusForbidden, "The ID token is of another tenant than this console's.")
		return
	}
	sess := session{ID: randomText(), Name: claims.Name, UPN: claims.UPN, ObjectID: claims.OID, Roles: claims.Roles,
		Expires: time.Now().Add(s.cfg.SessionLifetime).Unix()}
	if sess.UPN == "" {
		sess.UPN = claims.OID
	}
	value, err := s.seal.seal(sessionCookie, sess)
	if err != nil {
		fail(http.StatusInternalServerError, "The session could not be started.")
		return
	}
	http.SetCookie(w, cookie(loginCookie, "", time.Time{}))
	http.SetCookie(w, cookie(sessionCookie, value, time.Unix(sess.Expires, 0)))
	s.log.Info().Str("user", sess.UPN).Strs("roles", sess.Roles).Msg("signed in")
	http.Redirect(w, r, l.Next, http.StatusSeeOther)
}

// signOut ends the session. It needs the CSRF token too, so another site
// cannot sign a person out.
func (s *Server) signOut(w http.ResponseWriter, r *http.Request) {
	sess := s.sessionOf(r)
	_ = r.ParseForm()
	if sess != nil && !s.seal.validCSRF(sess, r.PostForm.Get("csrf")) {
		s.renderError(w, r, sess, http.StatusForbidden, "Sign-out refused: the form did not carry this session's token.")
		return
	}
	http.SetCookie(w, cookie(sessionCookie, "", time.Time{}))
	s.renderError(w, r, nil, http.StatusOK, "You are signed out.")
}

// exchangeFailure says why a code was not redeemed, without the code.
func exchangeFailure(err error) string {
	if re, ok := err.(*oauth2.RetrieveError); ok {
		return re.ErrorCode + ": " + truncate(re.ErrorDescription, 200)
	}
	return "the token endpoint could not be reached"
}

// localPath keeps a next= value that is a path of this console, else "/":
// an open redirect would let a link send a person elsewhere after sign-in.
func localPath(next string) string {
	u, err := url.Parse(next)
	if next == "" || err != nil || u.IsAbs() || u.Host != "" || !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.Contains(next, "\\") {
		return "/"
	}
	return next
}

func truncate(s string, n int) string {
	if r := []rune(s); len(r) > n {
		return string(r[:n]) + "…"
	}
	return s
}
