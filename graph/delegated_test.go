package graph_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/recoverpasscode/recoverpasscode/graph"
	"github.com/recoverpasscode/recoverpasscode/graph/graphsim"
	"github.com/recoverpasscode/recoverpasscode/internal/testsystem"
)

// The directory of the delegated tests: a tenant, an app registration that allows
// public client flows, and the service account that signs in.
const (
	simTenant   = "6a6a6a6a-1111-4111-8111-111111111111"
	simOther    = "6b6b6b6b-2222-4222-8222-222222222222"
	simClient   = "6c6c6c6c-3333-4333-8333-333333333333"
	simUPN      = "svc-recover@contoso.com"
	simPassword = "Corr3ct-Horse-Battery"
	simDevice   = "2d6a3d0e-8f5c-4d7a-9b1e-0b2f3c4d5e6f"
)

// newSim starts a Graph and Entra ID double holding the delegated tests' directory.
func newSim(t *testing.T, cfg graphsim.Config) *graphsim.Server {
	t.Helper()
	gs := graphsim.New(cfg)
	t.Cleanup(gs.Close)
	gs.AddTenant(simTenant)
	gs.AddTenant(simOther)
	gs.AddApp(simClient, "")
	gs.AddUser(simUPN, simPassword)
	return gs
}

// delegatedConfig selects delegated tokens from the cache at path, against gs.
func delegatedConfig(gs *graphsim.Server, path string) graph.CredentialConfig {
	return graph.CredentialConfig{
		TenantID:      simTenant,
		ClientID:      simClient,
		AuthorityHost: gs.AuthorityHost(),
		GraphBaseURL:  gs.GraphURL(),
		HTTPClient:    gs.Client(),
		TokenCache:    path,
	}
}

func simContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// signIn runs SignIn and approves its code as the service account would.
func signIn(t *testing.T, gs *graphsim.Server, cfg graph.CredentialConfig) (graph.SignedIn, graph.DeviceCode) {
	t.Helper()
	return signInAs(t, gs, cfg, simUPN)
}

// signInAs runs SignIn and approves its code as upn.
func signInAs(t *testing.T, gs *graphsim.Server, cfg graph.CredentialConfig, upn string) (graph.SignedIn, graph.DeviceCode) {
	t.Helper()
	ctx := simContext(t)
	type outcome struct {
		res   graph.SignedIn
		shown graph.DeviceCode
		err   error
	}
	done := make(chan outcome, 1)
	go func() {
		var o outcome
		o.res, o.err = graph.SignIn(ctx, cfg, func(dc graph.DeviceCode) { o.shown = dc })
		done <- o
	}()
	code, err := gs.WaitDeviceCode(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := gs.ApproveDeviceCode(code, upn); err != nil {
		t.Fatal(err)
	}
	o := <-done
	if o.err != nil {
		t.Fatalf("SignIn: %v", o.err)
	}
	if o.shown.UserCode != code {
		t.Fatalf("SignIn showed code %q, the pending one is %q", o.shown.UserCode, code)
	}
	return o.res, o.shown
}

func newDelegated(t *testing.T, cfg graph.CredentialConfig, log zerolog.Logger) *graph.Delegated {
	t.Helper()
	d, err := graph.NewDelegated(cfg, log)
	if err != nil {
		t.Fatalf("NewDelegated: %v", err)
	}
	return d
}

// cacheSecrets returns the token values a cache file holds: an access
// and a refresh token at least.
func cacheSecrets(t *testing.T, path string) []string {
	t.Helper()
	out := testsystem.CacheSecrets(t, path)
	if len(out) < 2 {
		t.Fatalf("cache holds %d tokens, want an access and a refresh token at least", len(out))
	}
	return out
}

func grants(gs *graphsim.Server, grantType string) int {
	n := 0
	for _, c := range gs.TokenCalls() {
		if c.GrantType == grantType && c.Status == 200 {
			n++
		}
	}
	return n
}

func TestCredentialConfigSelectsDelegated(t *testing.T) {
	base := graph.CredentialConfig{TenantID: simTenant, ClientID: simClient}
	tests := []struct {
		name      string
		change    func(c *graph.CredentialConfig)
		delegated bool
		want      string // substring of Validate's error; "" for none
	}{
		{"token cache alone", func(c *graph.CredentialConfig) { c.TokenCache = "/var/run/cache.json" }, true, ""},
		{"app-only wins over a token cache", func(c *graph.CredentialConfig) { c.TokenCache, c.ClientSecret = "/c.json", testSecret }, false, ""},
		{"neither", func(c *graph.CredentialConfig) {}, false, "or RECOVER_TOKEN_CACHE (written by `worker login`) for delegated tokens"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := base
			tt.change(&c)
			if got := c.Delegated(); got != tt.delegated {
				t.Errorf("Delegated() = %v, want %v", got, tt.delegated)
			}
			err := c.Validate()
			if (tt.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tt.want)) {
				t.Errorf("Validate = %v, want %q", err, tt.want)
			}
		})
	}
	t.Run("each constructor refuses the other mode", func(t *testing.T) {
		delegated := base
		delegated.TokenCache = "/c.json"
		if _, err := graph.NewCredential(delegated); err == nil || !strings.Contains(err.Error(), "NewDelegated") {
			t.Errorf("NewCredential(delegated) = %v", err)
		}
		appOnly := delegated
		appOnly.ClientSecret = testSecret
		if _, err := graph.NewDelegated(appOnly, zerolog.Nop()); err == nil || strings.Contains(err.Error(), testSecret) {
			t.Errorf("NewDelegated(app-only) = %v", err)
		}
	})
}

func TestDelegatedRefreshesSilentlyAndPersists(t *testing.T) {
	// Tokens shorter than MSAL's five-minute margin are never served from the
	// cache: every Token redeems the refresh token.
	gs := newSim(t, graphsim.Config{TokenLifetime: time.Minute})
	path := filepath.Join(t.TempDir(), "token-cache.json")
	cfg := delegatedConfig(gs, path)
	signIn(t, gs, cfg)
	d := newDelegated(t, cfg, zerolog.Nop())
	ctx := simContext(t)
	prev, _ := os.ReadFile(path)
	for i := range 3 {
		if _, err := d.Token(ctx, ""); err != nil {
			t.Fatalf("Token %d: %v", i, err)
		}
		now, _ := os.ReadFile(path)
		if bytes.Equal(now, prev) {
			t.Fatalf("Token %d: the refreshed cache was not written back", i)
		}
		prev = now
	}
	if n := grants(gs, "refresh_token"); n != 3 {
		t.Errorf("%d refreshes, want 3", n)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("rewritten cache has mode %v", fi.Mode())
	}
}

func TestDelegatedRevokedSessionNeedsANewLogin(t *testing.T) {
	gs := newSim(t, graphsim.Config{TokenLifetime: time.Minute})
	path := filepath.Join(t.TempDir(), "token-cache.json")
	cfg := delegatedConfig(gs, path)
	signIn(t, gs, cfg)
	d := newDelegated(t, cfg, zerolog.Nop())
	ctx := simContext(t)
	if _, err := d.Token(ctx, ""); err != nil {
		t.Fatal(err)
	}
	secrets := cacheSecrets(t, path)

	if err := gs.RevokeUserSessions(simUPN); err != nil {
		t.Fatal(err)
	}
	for _, get := range []func(context.Context, string) (string, error){d.Token, d.Refresh} {
		_, err := get(ctx, "")
		if !errors.Is(err, graph.ErrCredential) || !strings.Contains(err.Error(), "run `worker login` again") ||
			!strings.Contains(err.Error(), simUPN) || !strings.Contains(err.Error(), "(invalid_grant: AADSTS50173: ") {
			t.Fatalf("after revocation: %v; want ErrCredential asking for a new login", err)
		}
		for _, s := range secrets {
			if strings.Contains(err.Error(), s) {
				t.Fatalf("error %q shows a token", err)
			}
		}
	}

	// The person signs in again; the same Delegated finds the new cache.
	signIn(t, gs, cfg)
	if _, err := d.Token(ctx, ""); err != nil {
		t.Fatalf("after a new login: %v", err)
	}
}

func TestDelegatedFollowsANewLogin(t *testing.T) {
	gs := newSim(t, graphsim.Config{TokenLifetime: time.Minute})
	successor := gs.AddUser("svc-recover-2@contoso.com", simPassword)
	path := filepath.Join(t.TempDir(), "token-cache.json")
	cfg := delegatedConfig(gs, path)
	signIn(t, gs, cfg)
	d := newDelegated(t, cfg, zerolog.Nop())
	ctx := simContext(t)
	if _, err := d.Token(ctx, ""); err != nil {
		t.Fatal(err)
	}
	// Nothing fails: the worker notices the new file by itself.
	signInAs(t, gs, cfg, "svc-recover-2@contoso.com")
	if _, err := d.Token(ctx, ""); err != nil {
		t.Fatal(err)
	}
	calls := gs.TokenCalls()
	if last := calls[len(calls)-1]; last.GrantType != "refresh_token" || last.UserID != successor {
		t.Errorf("last token call = %+v, want a refresh for the account signed in last", last)
	}
}

func TestDelegatedErrors(t *testing.T) {
	gs := newSim(t, graphsim.Config{TokenLifetime: time.Minute})
	dir := t.TempDir()
	signedIn := filepath.Join(dir, "signed-in.json")
	signIn(t, gs, delegatedConfig(gs, signedIn))
	notJSON := filepath.Join(dir, "not-json")
	if err := os.WriteFile(notJSON, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		path   string
		tenant string
		before func()
		want   string
	}{
		{"no cache file", filepath.Join(dir, "missing.json"), "", nil, "holds no signed-in account"},
		{"not a cache", notJSON, "", nil, "not an MSAL token cache"},
		{"another tenant", signedIn, simOther, nil, "another tenant needs app-only credentials"},
		{"Entra ID down", signedIn, "", func() { gs.SetTokenEndpointDown(true) }, "Entra ID is unavailable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.before != nil {
				tt.before()
			}
			calls := len(gs.TokenCalls())
			d := newDelegated(t, delegatedConfig(gs, tt.path), zerolog.Nop())
			_, err := d.Token(simContext(t), tt.tenant)
			if !errors.Is(err, graph.ErrCredential) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Token = %v, want ErrCredential with %q", err, tt.want)
			}
			if tt.before == nil && len(gs.TokenCalls()) != calls {
				t.Error("Entra ID was asked")
			}
		})
	}
	t.Run("context ends", func(t *testing.T) {
		gs.SetTokenEndpointDown(false)
		d := newDelegated(t, delegatedConfig(gs, signedIn), zerolog.Nop())
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		_, err := d.Token(ctx, "")
		if !errors.Is(err, context.Canceled) || errors.Is(err, graph.ErrCredential) {
			t.Fatalf("Token = %v, want context.Canceled and not ErrCredential", err)
		}
	})
}

func TestDelegatedKeepsRefreshesInMemoryWhenTheCacheCannotBeWritten(t *testing.T) {
	gs := newSim(t, graphsim.Config{TokenLifetime: time.Minute})
	dir := t.TempDir()
	signedIn := filepath.Join(dir, "signed-in.json")
	signIn(t, gs, delegatedConfig(gs, signedIn))
	// Root ignores directory permissions, so the write fails another way a
	// read-only mount would: the temporary file beside the cache cannot be
	// created, as its name would pass the 255-byte limit.
	path := filepath.Join(dir, strings.Repeat("c", 250))
	data, err := os.ReadFile(signedIn)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	d := newDelegated(t, delegatedConfig(gs, path), zerolog.New(&logs))
	ctx := simContext(t)
	for i := range 3 {
		if _, err := d.Token(ctx, ""); err != nil {
			t.Fatalf("Token %d: %v", i, err)
		}
	}
	if now, _ := os.ReadFile(path); !bytes.Equal(now, data) {
		t.Error("the cache file changed")
	}
	if n := strings.Count(logs.String(), "cannot write the token cache"); n != 1 {
		t.Errorf("logged the failed write %d times, want once:\n%s", n, logs.String())
	}
	for _, s := range cacheSecrets(t, path) {
		if strings.Contains(logs.String(), s) {
			t.Fatal("the log shows a token")
		}
	}
}
