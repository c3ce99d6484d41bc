package graph_test

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// The fake's app registration.
const (
	tenantA  = "11111111-1111-1111-1111-111111111111"
	tenantB  = "22222222-2222-2222-2222-222222222222"
	clientID = "33333333-3333-3333-3333-333333333333"
)

// tokenRequest is what the fake Entra ID saw in one token request.
type tokenRequest struct {
	Tenant    string
	Method    string // "secret", "certificate" or "assertion"
	Assertion string
	Scope     string // the resource scope (…/.default)
	Grant     string
}

// entra is a fake Entra ID: the OIDC discovery document MSAL reads for an authority
// with instance discovery off, and a token endpoint that checks the client credential
// the way Entra ID does (secret, PS256 certificate assertion, or federated assertion).
type entra struct {
	srv *httptest.Server

	mu         sync.Mutex
	secret     string            // accepted client secret
	cert       *x509.Certificate // accepted assertion signer
	assertions map[string]bool   // accepted federated assertions
	echo       bool              // put the presented credential into the error text
	hold       chan struct{}     // when set, token requests wait for it to close
	requests   []tokenRequest
	paths      []string // every path requested, in order
	issued     int
}

func newEntra(t *testing.T) *entra {
	t.Helper()
	e := &entra{assertions: map[string]bool{}}
	e.srv = httptest.NewTLSServer(http.HandlerFunc(e.serve))
	t.Cleanup(e.srv.Close)
	return e
}

// host is the AZURE_AUTHORITY_HOST of the fake.
func (e *entra) host() string { return e.srv.URL }

func (e *entra) serve(w http.ResponseWriter, r *http.Request) {
	e.mu.Lock()
	e.paths = append(e.paths, r.URL.Path)
	hold := e.hold
	e.mu.Unlock()

	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	switch {
	case len(parts) == 4 && r.Method == http.MethodGet && strings.Join(parts[1:], "/") == "v2.0/.well-known/openid-configuration":
		base := e.srv.URL + "/" + parts[0]
		writeJSON(w, http.StatusOK, map[string]string{
			"authorization_endpoint": base + "/oauth2/v2.0/authorize",
			"token_endpoint":         base + "/oauth2/v2.0/token",
			"issuer":                 base + "/v2.0",
		})
	case len(parts) == 4 && r.Method == http.MethodPost && strings.Join(parts[1:], "/") == "oauth2/v2.0/token":
		if hold != nil {
			select {
			case <-hold:
			case <-r.Context().Done():
				panic(http.ErrAbortHandler) // returning would send an empty 200
			}
		}
		e.token(w, r, parts[0])
	default:
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "not_found"})
	}
}

func (e *entra) token(w http.ResponseWriter, r *http.Request, tenant string) {
	if err := r.ParseForm(); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_request"})
		return
	}
	f := r.PostForm
	req := tokenRequest{Tenant: tenant, Grant: f.Get("grant_type")}
	for _, s := range strings.Fields(f.Get("scope")) { // MSAL adds openid, profile, offline_access
		if strings.HasSuffix(s, "/.default") {
			req.Scope = s
		}
	}
	tokenURL := e.srv.URL + "/" + tenant + "/oauth2/v2.0/token"

	e.mu.Lock()
	defer e.mu.Unlock()
	var presented string
	ok := f.Get("client_id") == clientID && req.Grant == "client_credentials"
	switch {
	case f.Has("client_secret"):
		req.Method, presented = "secret", f.Get("client_secret")
		ok = ok && e.secret != "" && presented == e.secret
	case f.Get("client_assertion_type") == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer":
		presented = f.Get("client_assertion")
		req.Assertion = presented
		if e.assertions[presented] {
			req.Method = "assertion"
		} else {
			req.Method = "certificate"
			ok = ok && e.cert != nil && verifyAssertion(presented, e.cert, tokenURL) == nil
		}
	default:
		ok = false
	}
	e.requests = append(e.requests, req)
	if !ok {
		desc := "AADSTS7000215: Invalid client secret provided."
		if e.echo {
			desc += " Presented: " + presented
		}
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid_client", "error_description": desc})
		return
	}
	e.issued++
	writeJSON(w, http.StatusOK, map[string]any{
		"access_token":   fmt.Sprintf("at-%s-%d", tenant, e.issued),
		"token_type":     "Bearer",
		"expires_in":     3599,
		"ext_expires_in": 3599,
	})
}

// tokenRequests returns a copy of the token requests seen so far.
func (e *entra) tokenRequests() []tokenRequest {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]tokenRequest(nil), e.requests...)
}

func (e *entra) seenPaths() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.paths...)
}

func (e *entra) set(f func(e *entra)) {
	e.mu.Lock()
	defer e.mu.Unlock()
	f(e)
}

// verifyAssertion checks a client assertion as Entra ID would: a PS256 JWT whose
// x5t#S256 names cert, signed by its key, for this client and token endpoint.
func verifyAssertion(jwt string, cert *x509.Certificate, tokenURL string) error {
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		return errors.New("not a JWT")
	}
	var header struct {
		Alg  string `json:"alg"`
		X5t  string `json:"x5t#S256"`
		Type string `json:"typ"`
	}
	var claims struct {
		Aud string `json:"aud"`
		Iss string `json:"iss"`
		Sub string `json:"sub"`
		Exp int64  `json:"exp"`
	}
	if err := decodeSegment(parts[0], &header); err != nil {
		return err
	}
	if err := decodeSegment(parts[1], &claims); err != nil {
		return err
	}
	thumb := sha256.Sum256(cert.Raw)
	switch {
	case header.Alg != "PS256":
		return fmt.Errorf("alg %q", header.Alg)
	case header.X5t != base64.StdEncoding.EncodeToString(thumb[:]):
		return errors.New("x5t#S256 does not name the certificate")
	case claims.Aud != tokenURL || claims.Iss != clientID || claims.Sub != clientID:
		return fmt.Errorf("claims %+v", claims)
	case time.Unix(claims.Exp, 0).Before(time.Now()):
		return errors.New("expired")
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return err
	}
	digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	return rsa.VerifyPSS(cert.PublicKey.(*rsa.PublicKey), crypto.SHA256, digest[:], sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthAuto})
}

func decodeSegment(seg string, v any) error {
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// hostGuard is an HTTP transport that only lets requests reach one host and records
// any attempt to go elsewhere (e.g. instance discovery on the public cloud).
type hostGuard struct {
	allowed string
	next    http.RoundTripper

	mu      sync.Mutex
	refused []string
}

func (g *hostGuard) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Host != g.allowed {
		g.mu.Lock()
		g.refused = append(g.refused, r.URL.String())
		g.mu.Unlock()
		return nil, fmt.Errorf("hostGuard: %s is not the test server", r.URL.Host)
	}
	return g.next.RoundTrip(r)
}

func (g *hostGuard) refusedURLs() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]string(nil), g.refused...)
}

// guardedClient returns an HTTP client that trusts srv and reaches nothing else.
func guardedClient(srv *httptest.Server) (*http.Client, *hostGuard) {
	u, _ := url.Parse(srv.URL)
	g := &hostGuard{allowed: u.Host, next: srv.Client().Transport}
	return &http.Client{Transport: g, Timeout: 10 * time.Second}, g
}

// testCert is a self-signed RSA certificate and its key, made once per test binary.
var testCert = sync.OnceValues(func() (*x509.Certificate, *rsa.PrivateKey) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "recoverpasscode test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		panic(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		panic(err)
	}
	return cert, key
})
