package graphsim_test

import (
	"encoding/json"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"

	"github.com/recoverpasscode/recoverpasscode/graph/graphsim"
)

const (
	apiAppID = "99999999-8888-4777-8666-555555555555"
	apiURI   = "api://recoverpasscode"
)

// apiToken asks the token endpoint for a client credentials token for
// scope with the test app's secret and returns the token.
func apiToken(t *testing.T, s *graphsim.Server, scope string) string {
	t.Helper()
	status, body := postToken(t, s, tenantID, url.Values{
		"grant_type": {"client_credentials"}, "client_id": {appID}, "client_secret": {appSecret}, "scope": {scope},
	})
	tok, _ := body["access_token"].(string)
	if status != 200 || tok == "" {
		t.Fatalf("token request for %s: %d %v", scope, status, body)
	}
	return tok
}

// verifier is go-oidc's verifier for the tenant, found by discovery, as
// the gateway builds it.
func verifier(t *testing.T, s *graphsim.Server) *oidc.IDTokenVerifier {
	t.Helper()
	ctx := oidc.ClientContext(testContext(t), s.Client())
	p, err := oidc.NewProvider(ctx, s.Issuer(tenantID))
	if err != nil {
		t.Fatalf("discovery: %v", err)
	}
	return p.VerifierContext(ctx, &oidc.Config{ClientID: apiAppID})
}

type appClaims struct {
	Azp   string   `json:"azp"`
	Tid   string   `json:"tid"`
	Roles []string `json:"roles"`
	Ver   string   `json:"ver"`
	Idtyp string   `json:"idtyp"`
}

// TestAPITokensVerifyWithGoOIDC gets signed tokens for a registered API
// through the client credentials grant and verifies them with go-oidc
// against the discovered keys: the claims are Entra ID's v2.0 ones, the app
// roles appear once assigned, and a rotated key is picked up.
func TestAPITokensVerifyWithGoOIDC(t *testing.T) {
	s := newServer(t, graphsim.Config{})
	s.AddAPI(graphsim.API{AppID: apiAppID, IdentifierURI: apiURI})
	v := verifier(t, s)
	ctx := testContext(t)

	tok, err := v.Verify(ctx, apiToken(t, s, apiURI+"/.default"))
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	var c appClaims
	if err := tok.Claims(&c); err != nil {
		t.Fatal(err)
	}
	if c.Azp != appID || c.Tid != tenantID || c.Ver != "2.0" || c.Idtyp != "app" || len(c.Roles) != 0 {
		t.Fatalf("claims %+v", c)
	}
	if tok.Issuer != s.Issuer(tenantID) || !slices.Equal(tok.Audience, []string{apiAppID}) || time.Until(tok.Expiry) < 50*time.Minute {
		t.Fatalf("iss %s aud %v exp %s", tok.Issuer, tok.Audience, tok.Expiry)
	}

	s.AssignAppRole(appID, apiAppID, "Jobs.Submit")
	tok, err = v.Verify(ctx, apiToken(t, s, strings.ToUpper(apiAppID)+"/.default"))
	if err != nil {
		t.Fatalf("verify the token asked for by app ID: %v", err)
	}
	_ = tok.Claims(&c)
	if !slices.Equal(c.Roles, []string{"Jobs.Submit"}) {
		t.Fatalf("roles %v", c.Roles)
	}

	fetched := s.JWKSRequests()
	for range 3 {
		if _, err := v.Verify(ctx, apiToken(t, s, apiURI+"/.default")); err != nil {
			t.Fatal(err)
		}
	}
	if s.JWKSRequests() != fetched {
		t.Fatalf("the keys were fetched %d more times for tokens of a known key", s.JWKSRequests()-fetched)
	}
	if _, err := s.RotateSigningKey(); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(ctx, apiToken(t, s, apiURI+"/.default")); err != nil {
		t.Fatalf("a token signed by the rotated key: %v", err)
	}
	if s.JWKSRequests() != fetched+1 {
		t.Fatalf("JWKS fetched %d times after a rotation, want once", s.JWKSRequests()-fetched)
	}
}

func TestAPITokenRefusals(t *testing.T) {
	s := newServer(t, graphsim.Config{})
	s.AddAPI(graphsim.API{AppID: apiAppID, IdentifierURI: apiURI, TokenLifetime: -time.Minute})
	v := verifier(t, s)
	ctx := testContext(t)
	_, err := v.Verify(ctx, apiToken(t, s, apiURI+"/.default"))
	if _, expired := err.(*oidc.TokenExpiredError); !expired {
		t.Fatalf("a token of a negative lifetime: %v, want expired", err)
	}
	// A Graph token is opaque; an API token is no Graph token.
	if _, err := v.Verify(ctx, apiToken(t, s, graphScope)); err == nil {
		t.Fatal("a Graph token verified as an API token")
	}
	s.AddAPI(graphsim.API{AppID: apiAppID, IdentifierURI: apiURI})
	resp, _, err := do(t, ctx, s.Client(), s, request{path: managedDevicePath(deviceID), token: apiToken(t, s, apiURI+"/.default")})
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 401 {
		t.Fatalf("Graph answered %d to a token for another API, want 401", resp.StatusCode)
	}
}

// TestJWKSPublishesEveryKeyUntilRetired reads the keys where discovery
// says they are: a rotation adds one, a retirement leaves the current.
func TestJWKSPublishesEveryKeyUntilRetired(t *testing.T) {
	s := newServer(t, graphsim.Config{})
	s.AddAPI(graphsim.API{AppID: apiAppID})
	keys := func() []string {
		t.Helper()
		resp, err := s.Client().Get(s.JWKSURL(tenantID))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var doc struct {
			Keys []struct {
				Kid string `json:"kid"`
				Kty string `json:"kty"`
			} `json:"keys"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil || resp.StatusCode != 200 {
			t.Fatalf("JWKS: %d %v", resp.StatusCode, err)
		}
		var kids []string
		for _, k := range doc.Keys {
			kids = append(kids, k.Kid)
		}
		return kids
	}
	status, disc := getJSON(t, s, s.Issuer(tenantID)+"/.well-known/openid-configuration")
	if status != 200 || disc["jwks_uri"] != s.JWKSURL(tenantID) || disc["issuer"] != s.Issuer(tenantID) {
		t.Fatalf("discovery %d %v", status, disc)
	}
	first := keys()
	kid, err := s.RotateSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	if got := keys(); len(first) != 1 || !slices.Equal(got, append(first, kid)) {
		t.Fatalf("after a rotation: %v, first %v", got, first)
	}
	s.RetireSigningKeys()
	if got := keys(); !slices.Equal(got, []string{kid}) {
		t.Fatalf("after retiring: %v", got)
	}
}

func getJSON(t *testing.T, s *graphsim.Server, u string) (int, map[string]any) {
	t.Helper()
	resp, err := s.Client().Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&m)
	return resp.StatusCode, m
}
