package graphsim_test

import (
	"errors"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/recoverpasscode/recoverpasscode/graph/graphsim"
)

const redirectURI = "http://127.0.0.1:8080/auth/callback"

// signInAs opens the authorization URL, picks the user on the sign-in
// page (a test user's one-click button posts no password) and returns the
// query the double redirected to the app with.
func signInAs(t *testing.T, s *graphsim.Server, authURL, upn, password string) url.Values {
	t.Helper()
	c := s.Client()
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := c.Get(authURL)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := regexp.MustCompile(`name="request" value="([^"]+)"`).FindSubmatch(page)
	if resp.StatusCode != 200 || m == nil {
		t.Fatalf("sign-in page: %d %s", resp.StatusCode, page)
	}
	form := url.Values{"request": {string(m[1])}, "username": {upn}}
	if password != "" {
		form.Set("password", password)
	}
	resp, err = c.PostForm(authURL, form)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("sign in as %s: %d", upn, resp.StatusCode)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || !strings.HasPrefix(loc.String(), redirectURI) {
		t.Fatalf("redirected to %q", resp.Header.Get("Location"))
	}
	return loc.Query()
}

// TestAuthorizationCodeWithPKCE signs a user in as a web app does, with
// golang.org/x/oauth2 and go-oidc: the code comes back with the state, it
// redeems once with the right verifier only, and the signed ID token
// carries the nonce and the app roles assigned to the user.
func TestAuthorizationCodeWithPKCE(t *testing.T) {
	s := newServer(t, graphsim.Config{})
	s.AddRedirectURI(appID, redirectURI)
	s.AddUser("operator@contoso.test", "")
	s.AssignUserAppRole("operator@contoso.test", appID, "Console.Operate")
	ctx := oidc.ClientContext(testContext(t), s.Client())
	p, err := oidc.NewProvider(ctx, s.Issuer(tenantID))
	if err != nil {
		t.Fatal(err)
	}
	conf := oauth2.Config{ClientID: appID, ClientSecret: appSecret, Endpoint: p.Endpoint(), RedirectURL: redirectURI, Scopes: []string{oidc.ScopeOpenID, "profile"}}
	verifier := oauth2.GenerateVerifier()
	authURL := conf.AuthCodeURL("the-state", oauth2.S256ChallengeOption(verifier), oidc.Nonce("the-nonce"))

	q := signInAs(t, s, authURL, "operator@contoso.test", "")
	if q.Get("state") != "the-state" || q.Get("code") == "" {
		t.Fatalf("redirect query %v", q)
	}
	if _, err := conf.Exchange(ctx, q.Get("code"), oauth2.VerifierOption("not-the-verifier-"+verifier)); err == nil {
		t.Fatal("a wrong code_verifier was accepted")
	}
	q = signInAs(t, s, authURL, "operator@contoso.test", "")
	tok, err := conf.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatalf("exchange: %v", err)
	}
	if _, err := conf.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(verifier)); err == nil {
		t.Fatal("a code was redeemed twice")
	}
	raw, _ := tok.Extra("id_token").(string)
	idt, err := p.VerifierContext(ctx, &oidc.Config{ClientID: appID}).Verify(ctx, raw)
	if err != nil {
		t.Fatalf("verify the ID token: %v", err)
	}
	var c struct {
		Roles []string `json:"roles"`
		UPN   string   `json:"preferred_username"`
	}
	if err := idt.Claims(&c); err != nil {
		t.Fatal(err)
	}
	if idt.Nonce != "the-nonce" || c.UPN != "operator@contoso.test" || !slices.Equal(c.Roles, []string{"Console.Operate"}) {
		t.Fatalf("nonce %q claims %+v", idt.Nonce, c)
	}
}

// TestAuthorizationRefusals: an unregistered redirect URI is shown, never
// followed; a wrong password signs nobody in; a missing verifier fails.
func TestAuthorizationRefusals(t *testing.T) {
	s := newServer(t, graphsim.Config{})
	s.AddRedirectURI(appID, redirectURI)
	s.AddUser("reader@contoso.test", "pw-1")
	ctx := oidc.ClientContext(testContext(t), s.Client())
	p, err := oidc.NewProvider(ctx, s.Issuer(tenantID))
	if err != nil {
		t.Fatal(err)
	}
	c := s.Client()
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	evil := oauth2.Config{ClientID: appID, Endpoint: p.Endpoint(), RedirectURL: "https://evil.example/cb", Scopes: []string{oidc.ScopeOpenID}}
	resp, err := c.Get(evil.AuthCodeURL("s"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 400 || !strings.Contains(string(body), "AADSTS50011") {
		t.Fatalf("unregistered redirect URI: %d %s", resp.StatusCode, body)
	}

	conf := oauth2.Config{ClientID: appID, ClientSecret: appSecret, Endpoint: p.Endpoint(), RedirectURL: redirectURI, Scopes: []string{oidc.ScopeOpenID}}
	verifier := oauth2.GenerateVerifier()
	q := signInAs(t, s, conf.AuthCodeURL("s", oauth2.S256ChallengeOption(verifier)), "reader@contoso.test", "pw-1")
	_, err = conf.Exchange(ctx, q.Get("code"))
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) || re.ErrorCode != "invalid_grant" || !strings.Contains(re.ErrorDescription, "501481") {
		t.Fatalf("exchange without the verifier: %v", err)
	}
}
