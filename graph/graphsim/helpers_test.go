package graphsim_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/confidential"

	"github.com/recoverpasscode/recoverpasscode/graph/graphsim"
)

const (
	tenantID   = "7f3b2c1a-4d5e-4f60-8a9b-0c1d2e3f4a5b"
	appID      = "11111111-2222-4333-8444-555555555555"
	appSecret  = "correct horse battery staple"
	deviceID   = "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee"
	graphScope = "https://graph.microsoft.com/.default"
)

// newServer starts a Server with one tenant and one secret-based app, and
// closes it when the test ends.
func newServer(t *testing.T, cfg graphsim.Config) *graphsim.Server {
	t.Helper()
	s := graphsim.New(cfg)
	t.Cleanup(s.Close)
	s.AddTenant(tenantID)
	s.AddApp(appID, appSecret)
	return s
}

// testContext is a context that ends with the test or after a bound that
// only a hang would reach.
func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// confidentialClient is a real MSAL confidential client pointed at s.
func confidentialClient(t *testing.T, s *graphsim.Server, tenant, clientID string, cred confidential.Credential) confidential.Client {
	t.Helper()
	c, err := confidential.New(s.AuthorityHost()+"/"+tenant, clientID, cred,
		confidential.WithInstanceDiscovery(false),
		confidential.WithHTTPClient(s.Client()))
	if err != nil {
		t.Fatalf("confidential.New: %v", err)
	}
	return c
}

// appToken gets an app-only token for the test app through real MSAL.
func appToken(t *testing.T, s *graphsim.Server) string {
	t.Helper()
	cred, err := confidential.NewCredFromSecret(appSecret)
	if err != nil {
		t.Fatalf("NewCredFromSecret: %v", err)
	}
	res, err := confidentialClient(t, s, tenantID, appID, cred).AcquireTokenByCredential(testContext(t), []string{graphScope})
	if err != nil {
		t.Fatalf("AcquireTokenByCredential: %v", err)
	}
	return res.AccessToken
}

// request describes one Graph call made by do.
type request struct {
	method          string // defaults to POST
	path            string // appended to GraphURL without its /v1.0 when it starts with "/v"
	token           string
	body            string
	clientRequestID string
}

// managedDevicePath is the managedDevice form's path under GraphURL.
func managedDevicePath(id string) string {
	return "/deviceManagement/managedDevices/" + id + "/recoverPasscode"
}

// do makes one Graph call and returns the response with its body read.
func do(t *testing.T, ctx context.Context, client *http.Client, s *graphsim.Server, r request) (*http.Response, string, error) {
	t.Helper()
	if r.method == "" {
		r.method = http.MethodPost
	}
	url := s.GraphURL() + r.path
	if strings.HasPrefix(r.path, "/v") {
		url = strings.TrimSuffix(s.GraphURL(), "/v1.0") + r.path
	}
	var body io.Reader
	if r.body != "" {
		body = strings.NewReader(r.body)
	}
	req, err := http.NewRequestWithContext(ctx, r.method, url, body)
	if err != nil {
		t.Fatalf("NewRequest: %v", err)
	}
	if r.token != "" {
		req.Header.Set("Authorization", "Bearer "+r.token)
	}
	req.Header.Set("Accept", "application/json")
	if r.clientRequestID != "" {
		req.Header.Set("client-request-id", r.clientRequestID)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return resp, string(b), nil
}

// mustDo is do for calls that must get an answer.
func mustDo(t *testing.T, client *http.Client, s *graphsim.Server, r request) (*http.Response, string) {
	t.Helper()
	resp, body, err := do(t, testContext(t), client, s, r)
	if err != nil {
		t.Fatalf("%s %s: %v", r.method, r.path, err)
	}
	return resp, body
}
