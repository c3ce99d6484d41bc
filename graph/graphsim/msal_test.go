package graphsim_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/confidential"
	msalerrors "github.com/AzureAD/microsoft-authentication-library-for-go/apps/errors"

	"github.com/recoverpasscode/recoverpasscode/graph/graphsim"
)

// testCert is an RSA certificate and key, as an app registration holds.
type testCert struct {
	cert *x509.Certificate
	key  *rsa.PrivateKey
}

// newTestCert makes a self-signed RSA certificate. RSA key generation is slow
// under -race, so tests share the two they need.
var newTestCert = sync.OnceValue(func() [2]testCert {
	var out [2]testCert
	for i := range out {
		key, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(int64(i + 1)),
			Subject:      pkix.Name{CommonName: "graphsim test app"},
			NotBefore:    time.Now().Add(-time.Hour),
			NotAfter:     time.Now().Add(time.Hour),
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		if err != nil {
			panic(err)
		}
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			panic(err)
		}
		out[i] = testCert{cert: cert, key: key}
	}
	return out
})

// TestMSALConfidentialCredentials gets app-only tokens through real MSAL with
// each kind of app credential and uses them at Graph.
func TestMSALConfidentialCredentials(t *testing.T) {
	const federated = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6cmVjb3ZlciJ9.c2lnbmF0dXJl"
	certs := newTestCert()
	tests := []struct {
		name     string
		clientID string
		register func(s *graphsim.Server, clientID string)
		cred     func(t *testing.T) confidential.Credential
		want     string
	}{
		{
			name:     "secret",
			clientID: "aaaaaaaa-0000-4000-8000-000000000001",
			register: func(s *graphsim.Server, id string) { s.AddApp(id, "s3cret") },
			cred: func(t *testing.T) confidential.Credential {
				c, err := confidential.NewCredFromSecret("s3cret")
				if err != nil {
					t.Fatal(err)
				}
				return c
			},
			want: graphsim.CredentialSecret,
		},
		{
			name:     "certificate",
			clientID: "aaaaaaaa-0000-4000-8000-000000000002",
			register: func(s *graphsim.Server, id string) { s.AddAppCertificate(id, certs[0].cert) },
			cred: func(t *testing.T) confidential.Credential {
				c, err := confidential.NewCredFromCert([]*x509.Certificate{certs[0].cert}, certs[0].key)
				if err != nil {
					t.Fatal(err)
				}
				return c
			},
			want: graphsim.CredentialCertificate,
		},
		{
			name:     "federated",
			clientID: "aaaaaaaa-0000-4000-8000-000000000003",
			register: func(s *graphsim.Server, id string) { s.AddFederatedToken(id, federated) },
			cred: func(*testing.T) confidential.Credential {
				return confidential.NewCredFromAssertionCallback(func(context.Context, confidential.AssertionRequestOptions) (string, error) {
					return federated, nil
				})
			},
			want: graphsim.CredentialFederated,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newServer(t, graphsim.Config{})
			tt.register(s, tt.clientID)
			client := confidentialClient(t, s, tenantID, tt.clientID, tt.cred(t))
			ctx := testContext(t)

			res, err := client.AcquireTokenByCredential(ctx, []string{graphScope})
			if err != nil {
				t.Fatalf("AcquireTokenByCredential: %v", err)
			}
			if until := time.Until(res.ExpiresOn); until < 50*time.Minute || until > 61*time.Minute {
				t.Errorf("token expires in %s, want about 1h", until)
			}
			// A second acquisition is served from MSAL's cache, which proves
			// MSAL understood the token response's lifetime.
			if _, err := client.AcquireTokenByCredential(ctx, []string{graphScope}); err != nil {
				t.Fatalf("second AcquireTokenByCredential: %v", err)
			}
			calls := s.TokenCalls()
			if len(calls) != 1 {
				t.Fatalf("token endpoint called %d times, want 1 (then MSAL's cache): %+v", len(calls), calls)
			}
			if c := calls[0]; c.Credential != tt.want || c.Status != http.StatusOK || c.TenantID != tenantID || c.AppID != tt.clientID || c.GrantType != "client_credentials" {
				t.Errorf("token call = %+v, want credential %q, 200, tenant %s, app %s", c, tt.want, tenantID, tt.clientID)
			}

			resp, _ := mustDo(t, s.Client(), s, request{path: managedDevicePath(deviceID), token: res.AccessToken})
			if resp.StatusCode != http.StatusNoContent {
				t.Fatalf("Graph answered %d, want 204", resp.StatusCode)
			}
			got := s.Calls()[0]
			if got.TenantID != tenantID || got.AppID != tt.clientID || got.Delegated {
				t.Errorf("call = %+v, want tenant %s app %s app-only", got, tenantID, tt.clientID)
			}
		})
	}
}

// TestMSALWrongSecretThenFixed shows a wrong secret rejected the way Entra ID
// does, and a repaired registration accepted by the same MSAL client.
func TestMSALWrongSecretThenFixed(t *testing.T) {
	s := newServer(t, graphsim.Config{})
	cred, err := confidential.NewCredFromSecret("not the secret")
	if err != nil {
		t.Fatal(err)
	}
	client := confidentialClient(t, s, tenantID, appID, cred)
	ctx := testContext(t)

	_, err = client.AcquireTokenByCredential(ctx, []string{graphScope})
	var callErr msalerrors.CallErr
	if !errors.As(err, &callErr) {
		t.Fatalf("AcquireTokenByCredential error = %v, want an MSAL CallErr", err)
	}
	if callErr.Resp.StatusCode != http.StatusUnauthorized || !strings.Contains(err.Error(), "AADSTS7000215") || !strings.Contains(err.Error(), "invalid_client") {
		t.Errorf("error = %d %v, want 401 invalid_client AADSTS7000215", callErr.Resp.StatusCode, err)
	}
	if strings.Contains(err.Error(), "not the secret") || strings.Contains(err.Error(), appSecret) {
		t.Errorf("error %q reveals a secret", err)
	}

	s.AddApp(appID, "not the secret")
	if _, err := client.AcquireTokenByCredential(ctx, []string{graphScope}); err != nil {
		t.Fatalf("after fixing the secret: %v", err)
	}
}

// TestMSALCertificateAssertionRejected covers certificate assertions Entra ID
// would refuse: signed by an unregistered key, or for another app.
func TestMSALCertificateAssertionRejected(t *testing.T) {
	certs := newTestCert()
	s := newServer(t, graphsim.Config{})
	s.AddAppCertificate(appID, certs[0].cert)
	ctx := testContext(t)

	cred, err := confidential.NewCredFromCert([]*x509.Certificate{certs[1].cert}, certs[1].key)
	if err != nil {
		t.Fatal(err)
	}
	_, err = confidentialClient(t, s, tenantID, appID, cred).AcquireTokenByCredential(ctx, []string{graphScope})
	if err == nil || !strings.Contains(err.Error(), "AADSTS700027") {
		t.Errorf("unregistered certificate: error = %v, want AADSTS700027", err)
	}

	// The registered certificate of one app does not authenticate another.
	other := "bbbbbbbb-0000-4000-8000-000000000009"
	s.AddAppCertificate(other, certs[1].cert)
	cred, err = confidential.NewCredFromCert([]*x509.Certificate{certs[0].cert}, certs[0].key)
	if err != nil {
		t.Fatal(err)
	}
	_, err = confidentialClient(t, s, tenantID, other, cred).AcquireTokenByCredential(ctx, []string{graphScope})
	if err == nil || !strings.Contains(err.Error(), "AADSTS700027") {
		t.Errorf("another app's certificate: error = %v, want AADSTS700027", err)
	}
}

// TestMSALUnknownTenant shows discovery failing for an unregistered tenant.
func TestMSALUnknownTenant(t *testing.T) {
	s := newServer(t, graphsim.Config{})
	cred, err := confidential.NewCredFromSecret(appSecret)
	if err != nil {
		t.Fatal(err)
	}
	client := confidentialClient(t, s, "00000000-0000-4000-8000-00000000dead", appID, cred)
	_, err = client.AcquireTokenByCredential(testContext(t), []string{graphScope})
	if err == nil || !strings.Contains(err.Error(), "AADSTS90002") {
		t.Errorf("error = %v, want AADSTS90002", err)
	}
}

// TestMSALTokenEndpointDown shows an outage answered 503 and recovery in the
// same MSAL client.
func TestMSALTokenEndpointDown(t *testing.T) {
	s := newServer(t, graphsim.Config{})
	cred, err := confidential.NewCredFromSecret(appSecret)
	if err != nil {
		t.Fatal(err)
	}
	client := confidentialClient(t, s, tenantID, appID, cred)
	ctx := testContext(t)

	s.SetTokenEndpointDown(true)
	_, err = client.AcquireTokenByCredential(ctx, []string{graphScope})
	var callErr msalerrors.CallErr
	if !errors.As(err, &callErr) || callErr.Resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("error = %v, want a 503 CallErr", err)
	}
	s.SetTokenEndpointDown(false)
	if _, err := client.AcquireTokenByCredential(ctx, []string{graphScope}); err != nil {
		t.Fatalf("after the outage: %v", err)
	}
}
