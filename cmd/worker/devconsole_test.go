package main

import (
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/recoverpasscode/recoverpasscode/internal/testsystem"
)

// TestDevServesTheConsole: the --dev gateway serves the console at /, whose
// sign-in goes to the Entra ID double's authorization endpoint with PKCE,
// where the banner's test users sign in with one click.
func TestDevServesTheConsole(t *testing.T) {
	c, dev := startDevStack(t)
	c.GatewayAddr = "127.0.0.1:0"
	var banner testsystem.Buffer
	stop, err := serveDevGateway(c, dev, &banner)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	m := regexp.MustCompile(`Console: open (\S+) and sign in with one click as (\S+) \(operator\)`).FindStringSubmatch(banner.String())
	if m == nil {
		t.Fatalf("the banner does not say how to open the console:\n%s", banner.String())
	}
	base, operator := m[1], m[2]
	noFollow := &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noFollow.Get(base + "/jobs")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/signin?next=%2Fjobs" {
		t.Fatalf("GET /jobs signed out: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	resp, err = noFollow.Get(base + "/signin")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	to, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || !strings.HasPrefix(to.String(), dev.Graph.AuthorityHost()+"/") || to.Query().Get("code_challenge_method") != "S256" || to.Query().Get("redirect_uri") != base+"/auth/callback" {
		t.Fatalf("sign-in redirects to %q", resp.Header.Get("Location"))
	}
	page, err := dev.Graph.Client().Get(to.String())
	if err != nil {
		t.Fatal(err)
	}
	var body strings.Builder
	_, _ = io.Copy(&body, page.Body)
	page.Body.Close()
	if page.StatusCode != http.StatusOK || !strings.Contains(body.String(), "Sign in as "+operator) {
		t.Fatalf("the double's sign-in page: %d\n%s", page.StatusCode, body.String())
	}
}
