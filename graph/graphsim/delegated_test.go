package graphsim_test

import (
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/public"

	"github.com/recoverpasscode/recoverpasscode/graph/graphsim"
)

const (
	publicAppID = "44444444-5555-4666-8777-888888888888"
	userUPN     = "svc-recover@contoso.com"
	userPass    = "P@ssw0rd!"
	delegScope  = "https://graph.microsoft.com/DeviceManagementManagedDevices.PrivilegedOperations.All"
)

// publicClient is a real MSAL public client pointed at s.
func publicClient(t *testing.T, s *graphsim.Server) public.Client {
	t.Helper()
	c, err := public.New(publicAppID,
		public.WithAuthority(s.AuthorityHost()+"/"+tenantID),
		public.WithInstanceDiscovery(false),
		public.WithHTTPClient(s.Client()))
	if err != nil {
		t.Fatalf("public.New: %v", err)
	}
	return c
}

// TestDeviceCodeAndRefresh signs a service account in with the device code
// grant through real MSAL, uses the delegated token at Graph, refreshes it
// silently, and loses it when the user's sessions are revoked.
func TestDeviceCodeAndRefresh(t *testing.T) {
	// Tokens shorter than MSAL's five-minute margin make every silent
	// acquisition use the refresh token.
	s := newServer(t, graphsim.Config{TokenLifetime: time.Minute})
	s.AddApp(publicAppID, "")
	oid := s.AddUser(userUPN, userPass)
	pca := publicClient(t, s)
	ctx := testContext(t)

	dc, err := pca.AcquireTokenByDeviceCode(ctx, []string{delegScope})
	if err != nil {
		t.Fatalf("AcquireTokenByDeviceCode: %v", err)
	}
	if !strings.Contains(dc.Result.Message, dc.Result.UserCode) || dc.Result.VerificationURL != s.AuthorityHost()+"/devicelogin" {
		t.Errorf("device code result = %+v", dc.Result)
	}
	pending, err := s.WaitDeviceCode(ctx)
	if err != nil || pending != dc.Result.UserCode {
		t.Fatalf("WaitDeviceCode = %q, %v; want %q", pending, err, dc.Result.UserCode)
	}
	if err := s.ApproveDeviceCode(dc.Result.UserCode, "nobody@contoso.com"); !errors.Is(err, graphsim.ErrNoSuchUser) {
		t.Errorf("approve for an unknown user = %v, want ErrNoSuchUser", err)
	}
	if err := s.ApproveDeviceCode(dc.Result.UserCode, userUPN); err != nil {
		t.Fatalf("ApproveDeviceCode: %v", err)
	}
	res, err := dc.AuthenticationResult(ctx)
	if err != nil {
		t.Fatalf("AuthenticationResult: %v", err)
	}
	if res.Account.PreferredUsername != userUPN || res.Account.HomeAccountID != oid+"."+tenantID || res.IDToken.TenantID != tenantID {
		t.Errorf("account = %+v, id token tenant %q", res.Account, res.IDToken.TenantID)
	}

	resp, _ := mustDo(t, s.Client(), s, request{path: "/users/" + userUPN + "/managedDevices/" + deviceID + "/recoverPasscode", token: res.AccessToken})
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("Graph with the delegated token: %d", resp.StatusCode)
	}
	if c := s.Calls()[0]; !c.Delegated || c.AppID != publicAppID || c.TenantID != tenantID {
		t.Errorf("call = %+v, want delegated for the public app", c)
	}

	silent, err := pca.AcquireTokenSilent(ctx, []string{delegScope}, public.WithSilentAccount(res.Account))
	if err != nil {
		t.Fatalf("AcquireTokenSilent: %v", err)
	}
	if silent.AccessToken == res.AccessToken {
		t.Error("AcquireTokenSilent returned the old token; want a refreshed one")
	}
	calls := s.TokenCalls()
	if last := calls[len(calls)-1]; last.GrantType != "refresh_token" || last.Status != http.StatusOK || last.UserID != oid {
		t.Errorf("last token call = %+v, want a successful refresh for the user", last)
	}

	if err := s.RevokeUserSessions(userUPN); err != nil {
		t.Fatal(err)
	}
	_, err = pca.AcquireTokenSilent(ctx, []string{delegScope}, public.WithSilentAccount(res.Account))
	if err == nil || !strings.Contains(err.Error(), "invalid_grant") || !strings.Contains(err.Error(), "AADSTS50173") {
		t.Errorf("silent after revocation = %v, want invalid_grant AADSTS50173", err)
	}
}

// TestDeviceCodeDeclined shows a declined device code ending the poll.
func TestDeviceCodeDeclined(t *testing.T) {
	s := newServer(t, graphsim.Config{})
	s.AddApp(publicAppID, "")
	pca := publicClient(t, s)
	ctx := testContext(t)
	dc, err := pca.AcquireTokenByDeviceCode(ctx, []string{delegScope})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.DeclineDeviceCode(dc.Result.UserCode); err != nil {
		t.Fatal(err)
	}
	if _, err := dc.AuthenticationResult(ctx); err == nil || !strings.Contains(err.Error(), "authorization_declined") {
		t.Errorf("AuthenticationResult = %v, want authorization_declined", err)
	}
	if err := s.DeclineDeviceCode(dc.Result.UserCode); !errors.Is(err, graphsim.ErrNoSuchDeviceCode) {
		t.Errorf("declining twice = %v, want ErrNoSuchDeviceCode", err)
	}
}

// TestDeviceLoginPage approves a device code the way a person does in --dev
// mode: through the verification page, with the user's password.
func TestDeviceLoginPage(t *testing.T) {
	s := newServer(t, graphsim.Config{})
	s.AddApp(publicAppID, "")
	s.AddUser(userUPN, userPass)
	pca := publicClient(t, s)
	ctx := testContext(t)
	dc, err := pca.AcquireTokenByDeviceCode(ctx, []string{delegScope})
	if err != nil {
		t.Fatal(err)
	}
	client := s.Client()

	page, err := client.Get(dc.Result.VerificationURL)
	if err != nil {
		t.Fatal(err)
	}
	page.Body.Close()
	if page.StatusCode != http.StatusOK || !strings.HasPrefix(page.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("GET verification page: %d %s", page.StatusCode, page.Header.Get("Content-Type"))
	}
	for _, tt := range []struct {
		password string
		status   int
	}{{"wrong", http.StatusBadRequest}, {userPass, http.StatusOK}} {
		resp, err := client.PostForm(dc.Result.VerificationURL, url.Values{"user_code": {dc.Result.UserCode}, "username": {userUPN}, "password": {tt.password}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tt.status {
			t.Errorf("sign in with password %q: %d, want %d", tt.password, resp.StatusCode, tt.status)
		}
	}
	res, err := dc.AuthenticationResult(ctx)
	if err != nil || res.Account.PreferredUsername != userUPN {
		t.Fatalf("AuthenticationResult = %+v, %v", res.Account, err)
	}
}
