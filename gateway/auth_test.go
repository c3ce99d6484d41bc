package gateway

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/recoverpasscode/recoverpasscode/graph/graphsim"
)

// forge re-signs a token's header and claims with a key of the test's
// own: the same kid, the same claims, another signature.
func forge(t *testing.T, token string, edit func(claims map[string]any)) string {
	t.Helper()
	parts := strings.Split(token, ".")
	body, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var claims map[string]any
	if err := json.Unmarshal(body, &claims); err != nil {
		t.Fatal(err)
	}
	if edit != nil {
		edit(claims)
	}
	body, _ = json.Marshal(claims)
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	signed := parts[0] + "." + base64.RawURLEncoding.EncodeToString(body)
	sum := sha256.Sum256([]byte(signed))
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	return signed + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// TestAuthentication goes through real verification: go-oidc checks
// tokens the Entra ID double signed, against the keys it publishes.
func TestAuthentication(t *testing.T) {
	h := newHarness(t)
	good := h.token(automationApp, apiURI+"/.default")
	h.sys.GS.AddAPI(graphsim.API{AppID: apiAppID, IdentifierURI: apiURI, TokenLifetime: -time.Minute})
	expired := h.token(automationApp, apiURI+"/.default")
	h.sys.GS.AddAPI(graphsim.API{AppID: apiAppID, IdentifierURI: apiURI})
	header, _, _ := strings.Cut(good, ".")
	unsigned := header + "." + strings.Split(good, ".")[1] + "."

	bearer := func(tok string) map[string]string { return map[string]string{"Authorization": "Bearer " + tok} }
	for _, tc := range []struct {
		name    string
		headers map[string]string
		status  int
		typ     ProblemType
		detail  string
	}{
		{"no credential", nil, 401, ProblemUnauthenticated, "no credential"},
		{"unknown API key", bearer("rpk_not-a-key-this-gateway-knows"), 401, ProblemUnauthenticated, "API key"},
		{"unknown API key in X-API-Key", map[string]string{"X-API-Key": "rpk_nope"}, 401, ProblemUnauthenticated, "API key"},
		{"basic scheme", map[string]string{"Authorization": "Basic dXNlcjpwdw=="}, 401, ProblemUnauthenticated, "Bearer"},
		{"wrong audience", bearer(h.token(automationApp, otherAPIURI+"/.default")), 401, ProblemUnauthenticated, "audience"},
		{"expired token", bearer(expired), 401, ProblemUnauthenticated, "expired"},
		{"signed by another key", bearer(forge(t, good, nil)), 401, ProblemUnauthenticated, "signature"},
		{"not signed", bearer(unsigned), 401, ProblemUnauthenticated, ""},
		{"another issuer", bearer(forge(t, good, func(c map[string]any) { c["iss"] = "https://sts.windows.net/x/" })), 401, ProblemUnauthenticated, ""},
		{"a Graph token", bearer(h.token(automationApp, "https://graph.microsoft.com/.default")), 401, ProblemUnauthenticated, "API key"},
		{"missing role", bearer(h.token(rolelessApp, apiURI+"/.default")), 403, ProblemNotAllowed, DefaultRole},
		{"application of no source", bearer(h.token(unlistedApp, apiURI+"/.default")), 403, ProblemNotAllowed, "not configured"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := h.do(http.MethodPost, "/v1/jobs", []byte(jobBody(device(20))), tc.headers)
			p := r.problem(t, tc.status, tc.typ)
			if !strings.Contains(p["detail"].(string), tc.detail) {
				t.Errorf("detail %q does not mention %q", p["detail"], tc.detail)
			}
			if tc.status == 401 && !strings.HasPrefix(r.header.Get("WWW-Authenticate"), `Bearer realm="recoverpasscode"`) {
				t.Errorf("WWW-Authenticate %q", r.header.Get("WWW-Authenticate"))
			}
		})
	}

	t.Run("a valid token names its application's source", func(t *testing.T) {
		r := h.do(http.MethodPost, "/v1/jobs", []byte(jobBody(device(21))), bearer(good))
		if r.status != http.StatusAccepted {
			t.Fatalf("%d %s", r.status, r.body)
		}
		id := r.json(t)["jobId"].(string)
		if got := h.do(http.MethodGet, jobPath(id), nil, bearer(good)); got.status != 200 || got.json(t)["source"] != "automation" {
			t.Fatalf("GET as automation: %d %s", got.status, got.body)
		}
		h.get("ticketing", jobPath(id)).problem(t, http.StatusNotFound, ProblemNotFound)
	})

	t.Run("keys are cached, and fetched again after a rotation", func(t *testing.T) {
		fetched := h.sys.GS.JWKSRequests()
		for range 3 {
			if r := h.do(http.MethodGet, "/v1/jobs", nil, bearer(good)); r.status != 200 {
				t.Fatalf("%d %s", r.status, r.body)
			}
		}
		if n := h.sys.GS.JWKSRequests() - fetched; n != 0 {
			t.Errorf("the keys were fetched %d times for tokens of a known key", n)
		}
		if _, err := h.sys.GS.RotateSigningKey(); err != nil {
			t.Fatal(err)
		}
		// The keys were read less than keyRefetch ago; that has passed.
		h.advanceKeyClock(keyRefetch)
		if r := h.do(http.MethodGet, "/v1/jobs", nil, bearer(h.token(automationApp, apiURI+"/.default"))); r.status != 200 {
			t.Fatalf("a token of the new key: %d %s", r.status, r.body)
		}
		if n := h.sys.GS.JWKSRequests() - fetched; n != 1 {
			t.Errorf("the keys were fetched %d times after a rotation, want 1", n)
		}
	})

	t.Run("no credential reaches the log", func(t *testing.T) {
		logs := h.logs.String()
		for _, secret := range []string{good, expired, h.keys["ticketing"], h.keys["other"], "rpk_not-a-key", "dXNlcjpwdw=="} {
			if strings.Contains(logs, secret) {
				t.Errorf("the log holds a credential %.12s…", secret)
			}
		}
		if !strings.Contains(logs, `"auth":"entra"`) || !strings.Contains(logs, `"request_id"`) {
			t.Errorf("the access log does not name the caller's authentication:\n%s", logs)
		}
	})
}

// TestForgedKeyIDs: tokens naming key ids the tenant never published
// cost Entra ID at most one read of the keys per keyRefetch, however many
// arrive; tokens of known keys keep working, and a rotation is picked up
// once the interval has passed.
func TestForgedKeyIDs(t *testing.T) {
	h := newHarness(t)
	good := h.token(automationApp, apiURI+"/.default")
	bearer := func(tok string) map[string]string { return map[string]string{"Authorization": "Bearer " + tok} }
	forged := forgeKids(t, good, 100)
	flood := func() {
		t.Helper()
		var wg sync.WaitGroup
		for i := range 10 {
			wg.Go(func() {
				for _, tok := range forged[i*10 : i*10+10] {
					if r := h.do(http.MethodGet, "/v1/jobs", nil, bearer(tok)); r.status != http.StatusUnauthorized {
						t.Errorf("a token of an unknown key: %d %s", r.status, r.body)
					}
				}
			})
		}
		wg.Wait()
	}
	fetches := func() int { return h.sys.GS.JWKSRequests() }

	// From a cold start: the first forged tokens read the keys, once.
	flood()
	if n := fetches(); n != 1 {
		t.Errorf("the keys were read %d times for 100 tokens of unknown keys, want once", n)
	}
	if r := h.do(http.MethodGet, "/v1/jobs", nil, bearer(good)); r.status != 200 || fetches() != 1 {
		t.Fatalf("a valid token after the flood: %d %s, %d reads", r.status, r.body, fetches())
	}

	// A rotation just after a read waits for the interval.
	if _, err := h.sys.GS.RotateSigningKey(); err != nil {
		t.Fatal(err)
	}
	rotated := h.token(automationApp, apiURI+"/.default")
	if r := h.do(http.MethodGet, "/v1/jobs", nil, bearer(rotated)); r.status != http.StatusUnauthorized || fetches() != 1 {
		t.Fatalf("a token of a key published after the last read, within the interval: %d, %d reads", r.status, fetches())
	}
	h.advanceKeyClock(keyRefetch)
	if r := h.do(http.MethodGet, "/v1/jobs", nil, bearer(rotated)); r.status != 200 || fetches() != 2 {
		t.Fatalf("a token of the new key after the interval: %d %s, %d reads", r.status, r.body, fetches())
	}

	// Past the interval again: the flood reads once more, at most, and a
	// token of a known key id with a wrong signature reads never.
	h.advanceKeyClock(keyRefetch)
	if r := h.do(http.MethodGet, "/v1/jobs", nil, bearer(forge(t, good, nil))); r.status != http.StatusUnauthorized || fetches() != 2 {
		t.Fatalf("a known key id, signed by another key: %d, %d reads", r.status, fetches())
	}
	flood()
	if n := fetches() - 2; n != 1 {
		t.Errorf("the keys were read %d times for 100 more tokens of unknown keys, past the interval; want once", n)
	}
	for _, tok := range []string{good, rotated} {
		if r := h.do(http.MethodGet, "/v1/jobs", nil, bearer(tok)); r.status != 200 {
			t.Fatalf("a valid token: %d %s", r.status, r.body)
		}
	}
}

// forgeKids returns n copies of token, each naming a random key id and
// signed by a key of the test's own.
func forgeKids(t *testing.T, token string, n int) []string {
	t.Helper()
	parts := strings.Split(token, ".")
	hdr, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil {
		t.Fatal(err)
	}
	var header map[string]any
	if err := json.Unmarshal(hdr, &header); err != nil {
		t.Fatal(err)
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tokens := make([]string, n)
	for i := range tokens {
		header["kid"] = rand.Text()
		hdr, _ = json.Marshal(header)
		signed := base64.RawURLEncoding.EncodeToString(hdr) + "." + parts[1]
		sum := sha256.Sum256([]byte(signed))
		sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, sum[:])
		if err != nil {
			t.Fatal(err)
		}
		tokens[i] = signed + "." + base64.RawURLEncoding.EncodeToString(sig)
	}
	return tokens
}

// advanceKeyClock moves the clock of the gateway's key set d ahead, as
// if d had passed; the keys must have been read once.
func (h *harness) advanceKeyClock(d time.Duration) {
	h.t.Helper()
	e := h.gw.entra
	e.mu.Lock()
	k := e.keys
	e.mu.Unlock()
	if k == nil {
		h.t.Fatal("the gateway has not read the keys yet")
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	prev := k.now
	k.now = func() time.Time { return prev().Add(d) }
}

// TestAPIKeyRotation: two keys of one source both work, and a key
// removed from the configuration does not.
func TestAPIKeys(t *testing.T) {
	oldKey, oldHash, _ := NewAPIKey()
	newKey, newHash, _ := NewAPIKey()
	k := newKeyring([]Source{{Name: "ticketing", APIKeys: []string{oldHash, strings.ToUpper(newHash[:7]) + newHash[7:]}}, {Name: "batch", APIKeys: []string{HashAPIKey("b")}}})
	for key, want := range map[string]string{oldKey: "ticketing", newKey: "ticketing", "b": "batch"} {
		if got, ok := k.lookup(key); !ok || got != want {
			t.Errorf("lookup(%.8s…) = %q, %v; want %s", key, got, ok, want)
		}
	}
	if _, ok := k.lookup(oldKey + "x"); ok {
		t.Error("a key with a character more was accepted")
	}
	if !strings.HasPrefix(oldKey, "rpk_") || len(oldKey) != 4+43 || oldKey == newKey {
		t.Errorf("keys %q and %q", oldKey, newKey)
	}
	if looksLikeJWT(oldKey) {
		t.Error("an API key looks like a JWT")
	}
}

func TestMethodsAndRoutes(t *testing.T) {
	h := newHarness(t)
	r := h.do(http.MethodDelete, "/v1/jobs", nil, h.as("ticketing"))
	r.problem(t, http.StatusMethodNotAllowed, ProblemMethodNotAllowed)
	if got := r.header.Get("Allow"); got != "POST, GET, HEAD" {
		t.Errorf("Allow %q", got)
	}
	h.do(http.MethodGet, "/v2/nothing", nil, nil).problem(t, http.StatusNotFound, ProblemNotFound)
	if r := h.do(http.MethodGet, "/healthz", nil, nil); r.status != 200 {
		t.Errorf("/healthz %d", r.status)
	}
	if r := h.do(http.MethodGet, "/readyz", nil, nil); r.status != 200 || strings.TrimSpace(string(r.body)) != "ready" {
		t.Errorf("/readyz %d %s", r.status, r.body)
	}
	if r := h.do(http.MethodGet, "/v1/openapi.json", nil, nil); r.status != 200 || !strings.Contains(string(r.body), `"openapi": "3.1.0"`) {
		t.Errorf("/v1/openapi.json %d", r.status)
	}
	h.post("ticketing", jobBody(device(30)))
	r = h.do(http.MethodGet, "/metrics", nil, nil)
	for _, name := range []string{
		`recoverpasscode_gateway_requests_total{code="202",method="POST",route="/v1/jobs"} 1`,
		`recoverpasscode_gateway_submissions_total{outcome="accepted",source="ticketing"} 1`,
		"recoverpasscode_gateway_request_duration_seconds_bucket",
		`recoverpasscode_gateway_waits_total{outcome="timeout"} 0`,
		`recoverpasscode_gateway_auth_failures_total`,
		"go_goroutines",
	} {
		if !strings.Contains(string(r.body), name) {
			t.Errorf("/metrics lacks %s", name)
		}
	}
	// The request id: the caller's when valid, else a new one.
	if got := h.do(http.MethodGet, "/healthz", nil, map[string]string{"X-Request-Id": "sn-4711.a:b"}).header.Get("X-Request-Id"); got != "sn-4711.a:b" {
		t.Errorf("X-Request-Id %q, want the caller's", got)
	}
	if got := h.do(http.MethodGet, "/healthz", nil, map[string]string{"X-Request-Id": "bad id <script>"}).header.Get("X-Request-Id"); len(got) != 32 {
		t.Errorf("X-Request-Id %q, want a new one", got)
	}
	p := h.get("ticketing", "/v1/jobs/none").problem(t, 404, ProblemNotFound)
	if p["requestId"] == "" || p["instance"] != "/v1/jobs/none" {
		t.Errorf("problem %v", p)
	}
}
