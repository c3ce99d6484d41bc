package graph_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/recoverpasscode/recoverpasscode/graph"
)

const testSecret = "s3cr3t-Value~with.chars"

// newSecretCredential returns a Credential using a client secret against e, with an
// HTTP client that can reach e and nothing else.
func newSecretCredential(t *testing.T, e *entra) (*graph.Credential, *hostGuard) {
	t.Helper()
	e.set(func(e *entra) { e.secret = testSecret })
	hc, guard := guardedClient(e.srv)
	cred, err := graph.NewCredential(graph.CredentialConfig{
		TenantID:      tenantA,
		ClientID:      clientID,
		ClientSecret:  testSecret,
		AuthorityHost: e.host(),
		GraphBaseURL:  "https://graph.example.test/v1.0",
		HTTPClient:    hc,
	})
	if err != nil {
		t.Fatalf("NewCredential: %v", err)
	}
	return cred, guard
}

func TestCredentialConfigValidate(t *testing.T) {
	valid := graph.CredentialConfig{TenantID: tenantA, ClientID: clientID, ClientSecret: testSecret}
	tests := []struct {
		name   string
		change func(c *graph.CredentialConfig)
		want   string // substring of the error; "" for none
	}{
		{"secret", func(c *graph.CredentialConfig) {}, ""},
		{"domain tenant", func(c *graph.CredentialConfig) { c.TenantID = "contoso.onmicrosoft.com" }, ""},
		{"certificate", func(c *graph.CredentialConfig) { c.ClientSecret, c.CertificatePath = "", "/x.pem" }, ""},
		{"federated", func(c *graph.CredentialConfig) { c.ClientSecret, c.FederatedTokenFile = "", "/token" }, ""},
		{"no tenant", func(c *graph.CredentialConfig) { c.TenantID = "" }, "AZURE_TENANT_ID is required"},
		{"path in tenant", func(c *graph.CredentialConfig) { c.TenantID = "a/../b" }, "AZURE_TENANT_ID"},
		{"no client", func(c *graph.CredentialConfig) { c.ClientID = "" }, "AZURE_CLIENT_ID is required"},
		{"client not GUID", func(c *graph.CredentialConfig) { c.ClientID = "myapp" }, "AZURE_CLIENT_ID"},
		{"no method", func(c *graph.CredentialConfig) { c.ClientSecret = "" }, "set one of AZURE_CLIENT_SECRET"},
		{"two methods", func(c *graph.CredentialConfig) { c.FederatedTokenFile = "/token" }, "set only one"},
		{"password alone", func(c *graph.CredentialConfig) { c.CertificatePassword = "pw" }, "AZURE_CLIENT_CERTIFICATE_PASSWORD is set without"},
		{"http authority", func(c *graph.CredentialConfig) { c.AuthorityHost = "http://login.example" }, "AZURE_AUTHORITY_HOST"},
		{"authority with path", func(c *graph.CredentialConfig) { c.AuthorityHost = "https://login.example/tenant" }, "AZURE_AUTHORITY_HOST"},
		{"bad graph URL", func(c *graph.CredentialConfig) { c.GraphBaseURL = "ftp://graph.example" }, "GRAPH_BASE_URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := valid
			tt.change(&c)
			err := c.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate = %v, want an error containing %q", err, tt.want)
			}
			if strings.Contains(err.Error(), testSecret) {
				t.Fatalf("error %q shows the secret", err)
			}
		})
	}
}

func TestCredentialSecret(t *testing.T) {
	e := newEntra(t)
	cred, guard := newSecretCredential(t, e)
	token, err := cred.Token(context.Background(), "")
	if err != nil {
		t.Fatalf("Token: %v", err)
	}
	if token == "" {
		t.Fatal("empty token")
	}
	reqs := e.tokenRequests()
	want := tokenRequest{Tenant: tenantA, Method: "secret", Scope: "https://graph.example.test/.default", Grant: "client_credentials"}
	if len(reqs) != 1 || reqs[0] != want {
		t.Fatalf("token requests = %+v, want [%+v]", reqs, want)
	}
	// Instance discovery is off for a custom authority host: MSAL must have asked
	// nobody but the fake, and the fake for nothing but discovery and token.
	if refused := guard.refusedURLs(); len(refused) != 0 {
		t.Fatalf("MSAL tried to reach other hosts: %v", refused)
	}
	for _, p := range e.seenPaths() {
		if strings.Contains(p, "discovery/instance") {
			t.Fatalf("MSAL made an instance discovery call: %s", p)
		}
	}
}

func TestCredentialCacheAndRefresh(t *testing.T) {
	e := newEntra(t)
	cred, _ := newSecretCredential(t, e)
	ctx := context.Background()

	first, err := cred.Token(ctx, tenantA)
	if err != nil {
		t.Fatalf("Token: %v", err)
	}
	pathsAfterFirst := len(e.seenPaths())
	for range 5 {
		again, err := cred.Token(ctx, "")
		if err != nil || again != first {
			t.Fatalf("cached Token = %q, %v; want %q", again, err, first)
		}
	}
	if n := len(e.seenPaths()); n != pathsAfterFirst {
		t.Fatalf("cache hits made %d network calls", n-pathsAfterFirst)
	}

	refreshed, err := cred.Refresh(ctx, "")
	if err != nil {
		t.Fatalf("Refresh: %v", err)
	}
	if refreshed == first {
		t.Fatal("Refresh returned the cached token")
	}
	if n := len(e.tokenRequests()); n != 2 {
		t.Fatalf("token requests after Refresh = %d, want 2", n)
	}
	after, err := cred.Token(ctx, "")
	if err != nil || after != refreshed {
		t.Fatalf("Token after Refresh = %q, %v; want the refreshed %q", after, err, refreshed)
	}
	if n := len(e.tokenRequests()); n != 2 {
		t.Fatalf("Token after Refresh made a request (%d in all)", n)
	}
}

func TestCredentialMultiTenant(t *testing.T) {
	e := newEntra(t)
	cred, _ := newSecretCredential(t, e)
	ctx := context.Background()

	a, err := cred.Token(ctx, "")
	if err != nil {
		t.Fatalf("Token(default): %v", err)
	}
	b, err := cred.Token(ctx, tenantB)
	if err != nil {
		t.Fatalf("Token(B): %v", err)
	}
	if a == b {
		t.Fatal("both tenants got the same token")
	}
	reqs := e.tokenRequests()
	if len(reqs) != 2 || reqs[0].Tenant != tenantA || reqs[1].Tenant != tenantB {
		t.Fatalf("token requests = %+v, want one to %s then one to %s", reqs, tenantA, tenantB)
	}
	// Refreshing B leaves A's cached token alone.
	if _, err := cred.Refresh(ctx, tenantB); err != nil {
		t.Fatalf("Refresh(B): %v", err)
	}
	if again, _ := cred.Token(ctx, tenantA); again != a {
		t.Fatalf("tenant A token changed after refreshing B")
	}
	if n := len(e.tokenRequests()); n != 3 {
		t.Fatalf("token requests = %d, want 3", n)
	}
	if _, err := cred.Token(ctx, "../evil"); err == nil || errors.Is(err, graph.ErrCredential) {
		t.Fatalf("Token(bad tenant) = %v, want an error that does not blame the credentials", err)
	}
	if n := len(e.tokenRequests()); n != 3 {
		t.Fatalf("a bad tenant made a token request")
	}
}

func TestCredentialConcurrentMissFetchesOnce(t *testing.T) {
	e := newEntra(t)
	cred, _ := newSecretCredential(t, e)
	var wg sync.WaitGroup
	tokens := make([]string, 16)
	for i := range tokens {
		wg.Go(func() {
			tok, err := cred.Token(context.Background(), tenantB)
			if err != nil {
				t.Errorf("Token: %v", err)
			}
			tokens[i] = tok
		})
	}
	wg.Wait()
	if n := len(e.tokenRequests()); n != 1 {
		t.Fatalf("16 concurrent Token calls made %d token requests, want 1", n)
	}
	for _, tok := range tokens {
		if tok != tokens[0] {
			t.Fatalf("tokens differ: %q vs %q", tok, tokens[0])
		}
	}
}

func TestCredentialCertificate(t *testing.T) {
	cert, key := testCert()
	const password = "pfx-Password!"
	dir := t.TempDir()
	files := map[string]struct {
		data     []byte
		password string
	}{
		"plain.pem":     {pemCertAndKey(t, cert, key), ""},
		"encrypted.pem": {pemCertAndEncryptedKey(t, cert, key, password), password},
		"modern.pfx":    {encodePKCS12(t, cert, key, password, false), password},
		"legacy.p12":    {encodePKCS12(t, cert, key, password, true), password},
	}
	if openssl := opensslEncryptedPEM(t, cert, key, password); openssl != nil {
		files["openssl.pem"] = struct {
			data     []byte
			password string
		}{openssl, password}
	}
	for name, f := range files {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(dir, name)
			if err := os.WriteFile(path, f.data, 0o600); err != nil {
				t.Fatal(err)
			}
			e := newEntra(t)
			e.set(func(e *entra) { e.cert = cert })
			hc, _ := guardedClient(e.srv)
			cred, err := graph.NewCredential(graph.CredentialConfig{
				TenantID: tenantA, ClientID: clientID, AuthorityHost: e.host(), HTTPClient: hc,
				CertificatePath: path, CertificatePassword: f.password,
			})
			if err != nil {
				t.Fatalf("NewCredential: %v", err)
			}
			if _, err := cred.Token(context.Background(), tenantB); err != nil {
				t.Fatalf("Token: %v", err)
			}
			reqs := e.tokenRequests()
			if len(reqs) != 1 || reqs[0].Method != "certificate" || reqs[0].Tenant != tenantB ||
				reqs[0].Scope != "https://graph.microsoft.com/.default" {
				t.Fatalf("token requests = %+v, want one signed assertion to %s for the default scope", reqs, tenantB)
			}
		})
	}
}

func TestCredentialCertificateErrors(t *testing.T) {
	cert, key := testCert()
	const password = "right-password"
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	tests := []struct {
		name, path, password, want string
	}{
		{"missing file", filepath.Join(dir, "absent.pem"), "", "no such file"},
		{"wrong pfx password", write("a.pfx", encodePKCS12(t, cert, key, password, false)), "wrong-password", "wrong or missing AZURE_CLIENT_CERTIFICATE_PASSWORD"},
		{"no pfx password", write("b.pfx", encodePKCS12(t, cert, key, password, false)), "", "wrong or missing AZURE_CLIENT_CERTIFICATE_PASSWORD"},
		{"wrong PEM password", write("c.pem", pemCertAndEncryptedKey(t, cert, key, password)), "wrong-password", "wrong AZURE_CLIENT_CERTIFICATE_PASSWORD"},
		{"no PEM password", write("d.pem", pemCertAndEncryptedKey(t, cert, key, password)), "", "set AZURE_CLIENT_CERTIFICATE_PASSWORD"},
		{"certificate only", write("e.pem", pemCert(cert)), "", "no private key"},
		{"EC key", write("f.pem", append(pemCert(cert), pemECKey(t)...)), "", "EC key"},
		{"not a certificate", write("g.pfx", []byte("hello")), "", "neither PEM nor readable PKCS#12"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := graph.NewCredential(graph.CredentialConfig{
				TenantID: tenantA, ClientID: clientID, AuthorityHost: "https://login.example.test",
				CertificatePath: tt.path, CertificatePassword: tt.password,
			})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("NewCredential = %v, want an error containing %q", err, tt.want)
			}
			if tt.password != "" && strings.Contains(err.Error(), tt.password) {
				t.Fatalf("error %q shows the password", err)
			}
		})
	}
}

func TestCredentialFederatedTokenFile(t *testing.T) {
	e := newEntra(t)
	e.set(func(e *entra) { e.assertions["assertion-one"], e.assertions["assertion-two"] = true, true })
	path := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(path, []byte("assertion-one\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	hc, _ := guardedClient(e.srv)
	cred, err := graph.NewCredential(graph.CredentialConfig{
		TenantID: tenantA, ClientID: clientID, AuthorityHost: e.host(), HTTPClient: hc,
		FederatedTokenFile: path,
	})
	if err != nil {
		t.Fatalf("NewCredential: %v", err)
	}
	ctx := context.Background()
	if _, err := cred.Token(ctx, ""); err != nil {
		t.Fatalf("Token: %v", err)
	}
	// Kubernetes rotates the file; the next request must present the new content.
	if err := os.WriteFile(path, []byte("assertion-two"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := cred.Refresh(ctx, ""); err != nil {
		t.Fatalf("Refresh: %v", err)
	}
	reqs := e.tokenRequests()
	if len(reqs) != 2 || reqs[0].Assertion != "assertion-one" || reqs[1].Assertion != "assertion-two" ||
		reqs[0].Method != "assertion" || reqs[1].Method != "assertion" {
		t.Fatalf("token requests = %+v, want assertion-one then assertion-two", reqs)
	}

	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	_, err = cred.Refresh(ctx, "")
	if !errors.Is(err, graph.ErrCredential) || !strings.Contains(err.Error(), "AZURE_FEDERATED_TOKEN_FILE") {
		t.Fatalf("Refresh with the file gone = %v, want ErrCredential naming AZURE_FEDERATED_TOKEN_FILE", err)
	}
	// The old token is kept when a refresh fails.
	if _, err := cred.Token(ctx, ""); err != nil {
		t.Fatalf("Token after a failed Refresh: %v", err)
	}
}

func TestCredentialErrorsHideSecrets(t *testing.T) {
	t.Run("secret", func(t *testing.T) {
		e := newEntra(t)
		cred, _ := newSecretCredential(t, e)
		e.set(func(e *entra) { e.secret, e.echo = "another-secret", true })
		_, err := cred.Token(context.Background(), "")
		if !errors.Is(err, graph.ErrCredential) {
			t.Fatalf("Token = %v, want ErrCredential", err)
		}
		if strings.Contains(err.Error(), testSecret) || !strings.Contains(err.Error(), "AADSTS7000215") {
			t.Fatalf("error %q: want Entra's code and no secret", err)
		}
	})
	t.Run("assertion", func(t *testing.T) {
		e := newEntra(t)
		e.set(func(e *entra) { e.echo = true })
		path := filepath.Join(t.TempDir(), "token")
		const assertion = "eyJ.federated.assertion"
		if err := os.WriteFile(path, []byte(assertion), 0o600); err != nil {
			t.Fatal(err)
		}
		hc, _ := guardedClient(e.srv)
		cred, err := graph.NewCredential(graph.CredentialConfig{
			TenantID: tenantA, ClientID: clientID, AuthorityHost: e.host(), HTTPClient: hc,
			FederatedTokenFile: path,
		})
		if err != nil {
			t.Fatal(err)
		}
		_, err = cred.Token(context.Background(), "")
		if !errors.Is(err, graph.ErrCredential) || strings.Contains(err.Error(), assertion) {
			t.Fatalf("Token = %v, want ErrCredential without the assertion", err)
		}
	})
}

func TestCredentialContextEnds(t *testing.T) {
	e := newEntra(t)
	cred, _ := newSecretCredential(t, e)
	hold := make(chan struct{})
	e.set(func(e *entra) { e.hold = hold })
	defer close(hold)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err := cred.Token(ctx, "")
	if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, graph.ErrCredential) {
		t.Fatalf("Token = %v, want the context's error and not ErrCredential", err)
	}
}

func TestCredentialUnreachable(t *testing.T) {
	e := newEntra(t)
	cred, _ := newSecretCredential(t, e)
	e.srv.Close()
	_, err := cred.Token(context.Background(), "")
	if !errors.Is(err, graph.ErrCredential) {
		t.Fatalf("Token with Entra ID down = %v, want ErrCredential", err)
	}
}
