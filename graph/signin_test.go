package graph_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/recoverpasscode/recoverpasscode/graph"
	"github.com/recoverpasscode/recoverpasscode/graph/graphsim"
	"github.com/recoverpasscode/recoverpasscode/wire"
)

func TestSignInWritesAPrivateCacheForDelegatedCalls(t *testing.T) {
	gs := newSim(t, graphsim.Config{})
	path := filepath.Join(t.TempDir(), "new", "token-cache.json")
	cfg := delegatedConfig(gs, path)
	res, shown := signIn(t, gs, cfg)
	if res.UPN != simUPN || res.TenantID != simTenant || res.TokenCache != path {
		t.Errorf("SignIn = %+v", res)
	}
	if shown.VerificationURL != gs.AuthorityHost()+"/devicelogin" || !strings.Contains(shown.Message, shown.UserCode) || shown.ExpiresOn.Before(time.Now()) {
		t.Errorf("device code shown = %+v", shown)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("cache file: %v, mode %v; want 0600", err, fi.Mode())
	}
	if b, _ := os.ReadFile(path); bytes.Contains(b, []byte(simPassword)) {
		t.Error("the cache holds the password")
	}
	leftovers, _ := filepath.Glob(filepath.Join(filepath.Dir(path), ".*"))
	if len(leftovers) != 0 {
		t.Errorf("temporary files left beside the cache: %v", leftovers)
	}

	d := newDelegated(t, cfg, zerolog.Nop())
	client, err := graph.New(graph.Config{BaseURL: gs.GraphURL(), HTTPClient: gs.Client(), Credential: d})
	if err != nil {
		t.Fatal(err)
	}
	ctx := simContext(t)
	if _, err := client.RecoverPasscode(ctx, wire.Target{TenantID: simTenant, ManagedDeviceID: simDevice}); err != nil {
		t.Fatalf("RecoverPasscode: %v", err)
	}
	if c := gs.Calls()[0]; !c.Delegated || c.AppID != simClient || c.TenantID != simTenant {
		t.Errorf("call = %+v, want a delegated one", c)
	}

	// A valid token comes from the cache; Refresh redeems the refresh token.
	first, err := d.Token(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	again, err := d.Token(ctx, simTenant)
	if err != nil || again != first || grants(gs, "refresh_token") != 0 {
		t.Fatalf("second Token: changed %v, %d refreshes, %v", again != first, grants(gs, "refresh_token"), err)
	}
	fresh, err := d.Refresh(ctx, "")
	if err != nil || fresh == first || grants(gs, "refresh_token") != 1 {
		t.Fatalf("Refresh: new %v, %d refreshes, %v", fresh != first, grants(gs, "refresh_token"), err)
	}
	if now, err := d.Token(ctx, ""); err != nil || now != fresh {
		t.Errorf("Token after Refresh returned another token than the refreshed one (%v)", err)
	}
}

func TestSignInFailures(t *testing.T) {
	gs := newSim(t, graphsim.Config{})
	dir := t.TempDir()
	notADir := filepath.Join(dir, "file")
	if err := os.WriteFile(notADir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Run("cache directory cannot be made", func(t *testing.T) {
		_, err := graph.SignIn(simContext(t), delegatedConfig(gs, filepath.Join(notADir, "cache.json")), func(graph.DeviceCode) {
			t.Error("a code was shown for a sign-in that cannot be saved")
		})
		if err == nil || !strings.Contains(err.Error(), "token cache directory") {
			t.Fatalf("SignIn = %v", err)
		}
	})
	t.Run("declined", func(t *testing.T) {
		path := filepath.Join(dir, "declined.json")
		ctx := simContext(t)
		done := make(chan error, 1)
		go func() {
			_, err := graph.SignIn(ctx, delegatedConfig(gs, path), func(graph.DeviceCode) {})
			done <- err
		}()
		code, err := gs.WaitDeviceCode(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := gs.DeclineDeviceCode(code); err != nil {
			t.Fatal(err)
		}
		if err := <-done; err == nil || !strings.HasPrefix(err.Error(), "graph: sign in: authorization_declined: ") {
			t.Fatalf("SignIn = %v, want authorization_declined", err)
		}
		if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("a declined sign-in left a cache file: %v", err)
		}
	})
}
