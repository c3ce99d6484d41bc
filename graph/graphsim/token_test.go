package graphsim_test

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/recoverpasscode/recoverpasscode/graph/graphsim"
)

// postToken posts form to the tenant's token endpoint.
func postToken(t *testing.T, s *graphsim.Server, tenant string, form url.Values) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequestWithContext(testContext(t), http.MethodPost, s.AuthorityHost()+"/"+tenant+"/oauth2/v2.0/token", strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("client-request-id", "c0ffee00-0000-4000-8000-000000000000")
	resp, err := s.Client().Do(req)
	if err != nil {
		t.Fatalf("token request: %v", err)
	}
	defer resp.Body.Close()
	var body map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("decode token answer: %v", err)
	}
	return resp.StatusCode, body
}

// TestTokenEndpointErrors checks the token endpoint's refusals: status, OAuth
// error, AADSTS code and Entra ID's error shape.
func TestTokenEndpointErrors(t *testing.T) {
	s := newServer(t, graphsim.Config{})
	good := func(mod func(url.Values)) url.Values {
		v := url.Values{"grant_type": {"client_credentials"}, "client_id": {appID}, "client_secret": {appSecret}, "scope": {graphScope + " openid profile offline_access"}}
		mod(v)
		return v
	}
	tests := []struct {
		name   string
		tenant string
		form   url.Values
		status int
		err    string
		code   int
	}{
		{"unknown tenant", "00000000-0000-4000-8000-000000000000", good(func(url.Values) {}), 400, "invalid_tenant", 90002},
		{"unknown app", tenantID, good(func(v url.Values) { v.Set("client_id", "99999999-0000-4000-8000-000000000000") }), 400, "unauthorized_client", 700016},
		{"wrong secret", tenantID, good(func(v url.Values) { v.Set("client_secret", "nope") }), 401, "invalid_client", 7000215},
		{"no credential", tenantID, good(func(v url.Values) { v.Del("client_secret") }), 401, "invalid_client", 7000218},
		{"no scope", tenantID, good(func(v url.Values) { v.Del("scope") }), 400, "invalid_request", 90014},
		{"scope without .default", tenantID, good(func(v url.Values) { v.Set("scope", "https://graph.microsoft.com/User.Read") }), 400, "invalid_scope", 1002012},
		{"unsupported grant", tenantID, good(func(v url.Values) { v.Set("grant_type", "password") }), 400, "unsupported_grant_type", 70003},
		{"no grant type", tenantID, good(func(v url.Values) { v.Del("grant_type") }), 400, "invalid_request", 900144},
		{"unknown federated assertion", tenantID, good(func(v url.Values) {
			v.Del("client_secret")
			v.Set("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
			v.Set("client_assertion", "not-registered")
		}), 401, "invalid_client", 70021},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body := postToken(t, s, tt.tenant, tt.form)
			if status != tt.status || body["error"] != tt.err {
				t.Fatalf("answer = %d %v, want %d %s", status, body, tt.status, tt.err)
			}
			codes, _ := body["error_codes"].([]any)
			if len(codes) != 1 || codes[0] != float64(tt.code) {
				t.Errorf("error_codes = %v, want [%d]", body["error_codes"], tt.code)
			}
			desc, _ := body["error_description"].(string)
			if !strings.HasPrefix(desc, "AADSTS") || body["correlation_id"] != "c0ffee00-0000-4000-8000-000000000000" || body["trace_id"] == "" || body["timestamp"] == "" {
				t.Errorf("error body %v lacks Entra ID's description, correlation, trace or timestamp", body)
			}
			if strings.Contains(desc, appSecret) {
				t.Errorf("description %q reveals the secret", desc)
			}
		})
	}
}

// TestClientAssertionClaims signs assertions by hand to cover the claims
// MSAL always gets right: audience, issuer and lifetime.
func TestClientAssertionClaims(t *testing.T) {
	certs := newTestCert()
	s := newServer(t, graphsim.Config{})
	s.AddAppCertificate(appID, certs[0].cert)
	tokenEndpoint := s.AuthorityHost() + "/" + tenantID + "/oauth2/v2.0/token"
	now := time.Now()
	claims := func(mod func(map[string]any)) map[string]any {
		c := map[string]any{"aud": tokenEndpoint, "iss": appID, "sub": appID, "jti": "1", "nbf": now.Unix(), "exp": now.Add(10 * time.Minute).Unix()}
		mod(c)
		return c
	}
	tests := []struct {
		name   string
		claims map[string]any
		status int
		code   int
	}{
		{"valid", claims(func(map[string]any) {}), 200, 0},
		{"audience as a list", claims(func(c map[string]any) { c["aud"] = []string{tokenEndpoint} }), 200, 0},
		{"expired", claims(func(c map[string]any) { c["exp"] = now.Add(-10 * time.Minute).Unix() }), 401, 700024},
		{"not yet valid", claims(func(c map[string]any) { c["nbf"] = now.Add(10 * time.Minute).Unix() }), 401, 700024},
		{"other audience", claims(func(c map[string]any) {
			c["aud"] = "https://login.microsoftonline.com/" + tenantID + "/oauth2/v2.0/token"
		}), 401, 700212},
		{"other issuer", claims(func(c map[string]any) { c["iss"] = "someone-else" }), 401, 700021},
		{"no expiry", claims(func(c map[string]any) { delete(c, "exp") }), 400, 50027},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			form := url.Values{
				"grant_type":            {"client_credentials"},
				"client_id":             {appID},
				"scope":                 {graphScope},
				"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"},
				"client_assertion":      {signPS256(t, certs[0], tt.claims)},
			}
			status, body := postToken(t, s, tenantID, form)
			if status != tt.status {
				t.Fatalf("answer = %d %v, want %d", status, body, tt.status)
			}
			if tt.code == 0 {
				if body["access_token"] == "" || body["token_type"] != "Bearer" || body["expires_in"] == nil {
					t.Errorf("token answer %v lacks access_token, token_type or expires_in", body)
				}
				return
			}
			if codes, _ := body["error_codes"].([]any); len(codes) != 1 || codes[0] != float64(tt.code) {
				t.Errorf("error_codes = %v, want [%d]", body["error_codes"], tt.code)
			}
		})
	}
}

// signPS256 signs claims the way MSAL does: PS256 with an x5t#S256 header.
func signPS256(t *testing.T, c testCert, claims map[string]any) string {
	t.Helper()
	thumb := sha256.Sum256(c.cert.Raw)
	header, err := json.Marshal(map[string]any{"alg": "PS256", "typ": "JWT", "x5t#S256": base64.StdEncoding.EncodeToString(thumb[:])})
	if err != nil {
		t.Fatal(err)
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	signed := base64.RawURLEncoding.EncodeToString(header) + "." + base64.RawURLEncoding.EncodeToString(payload)
	digest := sha256.Sum256([]byte(signed))
	sig, err := rsa.SignPSS(rand.Reader, c.key, crypto.SHA256, digest[:], &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
	if err != nil {
		t.Fatal(err)
	}
	return signed + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// TestDiscoveryDocument checks the fields MSAL requires.
func TestDiscoveryDocument(t *testing.T) {
	s := newServer(t, graphsim.Config{})
	resp, err := s.Client().Get(s.AuthorityHost() + "/" + tenantID + "/v2.0/.well-known/openid-configuration")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var doc map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		t.Fatal(err)
	}
	base := s.AuthorityHost() + "/" + tenantID
	want := map[string]string{
		"token_endpoint":                base + "/oauth2/v2.0/token",
		"authorization_endpoint":        base + "/oauth2/v2.0/authorize",
		"device_authorization_endpoint": base + "/oauth2/v2.0/devicecode",
		"issuer":                        base + "/v2.0",
	}
	for k, v := range want {
		if doc[k] != v {
			t.Errorf("%s = %v, want %s", k, doc[k], v)
		}
	}
}
