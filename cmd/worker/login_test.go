package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/recoverpasscode/recoverpasscode/graph"
	"github.com/recoverpasscode/recoverpasscode/graph/graphsim"
	"github.com/recoverpasscode/recoverpasscode/internal/testsystem"
	"github.com/recoverpasscode/recoverpasscode/wire"
)

// The service account the delegated worker acts as.
const (
	serviceUPN      = "svc-recover@contoso.com"
	servicePassword = "Corr3ct-Horse-Battery-Staple"
)

// opaqueToken matches a token as the Graph double issues them (32 random bytes,
// base64url), standing alone.
var opaqueToken = regexp.MustCompile(`(^|[^A-Za-z0-9_-])[A-Za-z0-9_-]{43}([^A-Za-z0-9_-]|$)`)

// loginAs runs worker login's run function and approves its code as the service
// account would; it returns what worker login printed.
func loginAs(t *testing.T, gs *graphsim.Server, cfg graph.CredentialConfig) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	var out bytes.Buffer
	done := make(chan error, 1)
	go func() { done <- runLogin(ctx, cfg, &out) }()
	code, err := gs.WaitDeviceCode(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := gs.ApproveDeviceCode(code, serviceUPN); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("worker login: %v", err)
	}
	if !strings.Contains(out.String(), code) {
		t.Errorf("worker login did not show the code %s:\n%s", code, out.String())
	}
	return out.String()
}

// healthAddr finds where the worker serves /readyz in its log.
func healthAddr(t *testing.T, logs *testsystem.Buffer) string {
	t.Helper()
	var addr string
	testsystem.Eventually(10*time.Second, func() bool {
		sc := bufio.NewScanner(strings.NewReader(logs.String()))
		for sc.Scan() {
			var line struct{ Addr, Message string }
			if json.Unmarshal(sc.Bytes(), &line) == nil && strings.HasPrefix(line.Message, "serving /healthz") {
				addr = line.Addr
			}
		}
		return addr != ""
	})
	if addr == "" {
		t.Fatalf("the worker did not log its health address:\n%s", logs.String())
	}
	return addr
}

// waitReadyz polls /readyz until its status and body satisfy ok.
func waitReadyz(t *testing.T, addr string, timeout time.Duration, ok func(status int, body string) bool) string {
	t.Helper()
	var status int
	var body string
	done := testsystem.Eventually(timeout, func() bool {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		status, body = resp.StatusCode, string(b)
		return ok(status, body)
	})
	if !done {
		t.Fatalf("/readyz stayed at %d %q", status, body)
	}
	return body
}

func streamMsgs(t *testing.T, sys *testsystem.System, stream string) uint64 {
	t.Helper()
	s, err := sys.JS.Stream(t.Context(), stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

func TestDelegatedFlags(t *testing.T) {
	for _, env := range []string{"AZURE_CLIENT_SECRET", "AZURE_CLIENT_CERTIFICATE_PATH", "AZURE_FEDERATED_TOKEN_FILE", "RECOVER_TOKEN_CACHE", "RECOVER_TENANTS"} {
		t.Setenv(env, "")
	}
	ids := []string{"--tenant-id", testsystem.Tenant, "--client-id", testsystem.Client}
	tests := []struct {
		name string
		args []string
		want string // substring of the error; "" for none
	}{
		{"login", append([]string{"login", "--token-cache", "/run/cache.json"}, ids...), ""},
		{"login without a cache file", append([]string{"login"}, ids...), "RECOVER_TOKEN_CACHE (--token-cache) is required"},
		{"login without a tenant", []string{"login", "--token-cache", "/c.json", "--client-id", testsystem.Client}, "AZURE_TENANT_ID is required"},
		{"delegated worker", append([]string{"--token-cache", "/run/cache.json"}, ids...), ""},
		{"delegated worker for its own tenant", append([]string{"--token-cache", "/c.json", "--tenants", testsystem.Tenant}, ids...), ""},
		{"delegated worker for another tenant", append([]string{"--token-cache", "/c.json", "--tenants", testsystem.Tenant + "," + testsystem.OtherTenant}, ids...), "serves only AZURE_TENANT_ID"},
		{"worker with no credential", ids, "or RECOVER_TOKEN_CACHE"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var err error
			if tt.args[0] == "login" {
				_, err = parseLoginConfig(tt.args[1:])
			} else {
				_, err = parseConfig(tt.args)
			}
			if (tt.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tt.want)) {
				t.Fatalf("error = %v, want %q", err, tt.want)
			}
		})
	}
}

// TestLoginSubcommand runs the worker binary as `worker login`, to check that main
// dispatches to it and maps its outcomes to exit codes.
func TestLoginSubcommand(t *testing.T) {
	tests := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"login", "--help"}, 0, "worker login signs a service account in"},
		{[]string{"login", "--tenant-id", testsystem.Tenant, "--client-id", testsystem.Client}, 2, "worker login: RECOVER_TOKEN_CACHE"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			cmd := exec.Command(os.Args[0], tt.args...)
			cmd.Env = append(os.Environ(), childEnv+"=1", "RECOVER_TOKEN_CACHE=")
			out, err := cmd.CombinedOutput()
			code := 0
			var exit *exec.ExitError
			if errors.As(err, &exit) {
				code = exit.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tt.code || !strings.Contains(string(out), tt.want) {
				t.Fatalf("exit %d, output:\n%s\nwant exit %d and %q", code, out, tt.code, tt.want)
			}
		})
	}
}

// TestLoginThenDelegatedWorker signs a service account in with worker login, runs
// a worker on its delegated tokens, revokes its sessions and signs it in again:
// no job fails, and the worker resumes by itself.
func TestLoginThenDelegatedWorker(t *testing.T) {
	// Tokens shorter than MSAL's five-minute margin are never served from the
	// cache, so every job refreshes the sign-in silently.
	sys := testsystem.Start(t, graphsim.Config{TokenLifetime: time.Minute})
	sys.GS.AddUser(serviceUPN, servicePassword)
	cache := filepath.Join(t.TempDir(), "token-cache.json")
	loginCfg := graph.CredentialConfig{
		TenantID:      testsystem.Tenant,
		ClientID:      testsystem.Client,
		AuthorityHost: sys.GS.AuthorityHost(),
		GraphBaseURL:  sys.GS.GraphURL(),
		HTTPClient:    sys.GS.Client(),
		TokenCache:    cache,
	}
	var tokens []string // every token seen in the cache, to look for in the output

	out := loginAs(t, sys.GS, loginCfg)
	if !strings.Contains(out, serviceUPN) || !strings.Contains(out, cache) {
		t.Errorf("worker login output lacks the account or the cache path:\n%s", out)
	}
	fi, err := os.Stat(cache)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("token cache: %v, mode %v; want 0600", err, fi.Mode())
	}
	if b, _ := os.ReadFile(cache); bytes.Contains(b, []byte(servicePassword)) {
		t.Error("the token cache holds the password")
	}
	tokens = append(tokens, testsystem.CacheSecrets(t, cache)...)

	cfg := sys.Config("w1")
	cfg.Credential.ClientSecret = ""
	cfg.Credential.TokenCache = cache
	cfg.Tenants = nil // a delegated account serves its own tenant only
	cfg.HTTPAddr = "127.0.0.1:0"
	logs := sys.StartWorker(cfg)
	addr := healthAddr(t, logs)

	t.Run("jobs run on delegated tokens, refreshed silently", func(t *testing.T) {
		before, _ := os.ReadFile(cache)
		for i := range 3 {
			sys.Submit("ticketing", wire.Job{ID: fmt.Sprintf("delegated-%d", i), ManagedDeviceID: testsystem.DeviceN(i)})
		}
		for id, r := range sys.Results("", 3, 20*time.Second) {
			if r.Status != wire.Succeeded {
				t.Errorf("%s: %s %s", id, r.Status, r.Error)
			}
		}
		for _, c := range sys.GS.Calls() {
			if !c.Delegated || c.AppID != testsystem.Client {
				t.Errorf("graph call %+v was not made with a delegated token", c)
			}
		}
		if after, _ := os.ReadFile(cache); bytes.Equal(after, before) {
			t.Error("the refreshed tokens were not written to the cache")
		}
		tokens = append(tokens, testsystem.CacheSecrets(t, cache)...)
	})

	t.Run("a revoked sign-in stops the worker without failing jobs", func(t *testing.T) {
		if err := sys.GS.RevokeUserSessions(serviceUPN); err != nil {
			t.Fatal(err)
		}
		sys.Submit("ticketing", wire.Job{ID: "after-revoke", ManagedDeviceID: testsystem.Device})
		body := waitReadyz(t, addr, 20*time.Second, func(status int, body string) bool {
			return status == http.StatusServiceUnavailable && strings.Contains(body, "run `worker login` again")
		})
		t.Logf("/readyz: %s", body)
		if n := streamMsgs(t, sys, sys.Names.ResultsStream()); n != 3 {
			t.Errorf("%d results, want the 3 from before the revocation", n)
		}
		if n := streamMsgs(t, sys, sys.Names.JobsStream()); n != 1 {
			t.Errorf("%d jobs queued, want the one submitted after the revocation", n)
		}
	})

	t.Run("a new login resumes the worker", func(t *testing.T) {
		out += loginAs(t, sys.GS, loginCfg)
		tokens = append(tokens, testsystem.CacheSecrets(t, cache)...)
		r := sys.Results("", 4, 30*time.Second)["after-revoke"]
		if r.Status != wire.Succeeded {
			t.Fatalf("after-revoke: %s %s", r.Status, r.Error)
		}
		waitReadyz(t, addr, 5*time.Second, func(status int, _ string) bool { return status == http.StatusOK })
		if n := streamMsgs(t, sys, sys.Names.DLQStream()); n != 0 {
			t.Errorf("%d dead letters", n)
		}
	})

	text := out + logs.String()
	for _, s := range append(tokens, servicePassword, testsystem.Secret) {
		if strings.Contains(text, s) {
			t.Fatalf("a token or secret appears in the output or the log: %.8s…", s)
		}
	}
	if m := opaqueToken.FindString(logs.String()); m != "" {
		t.Errorf("the log holds something shaped like a token: %q", m)
	}
}
