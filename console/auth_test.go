package console

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/recoverpasscode/recoverpasscode/devserver/devservertest"
)

func newTestConsole(t *testing.T, readOnly bool) *Server {
	t.Helper()
	ns := devservertest.Start(t)
	nc, err := nats.Connect(ns.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{JetStream: js, TenantID: "33333333-3333-4333-8333-333333333333", ClientID: "77777777-7777-4777-8777-777777777777",
		AuthorityHost: "https://127.0.0.1:1", BaseURL: "http://127.0.0.1:8080", ReadOnly: readOnly})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// cookieOf seals a session for roles, as the callback would.
func cookieOf(t *testing.T, s *Server, roles ...string) (*http.Cookie, *session) {
	t.Helper()
	sess := &session{ID: randomText(), UPN: "someone@contoso.test", Roles: roles, Expires: time.Now().Add(time.Hour).Unix()}
	v, err := s.seal.seal(sessionCookie, sess)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Cookie{Name: sessionCookie, Value: v}, sess
}

func post(s *Server, c *http.Cookie, path string, form url.Values) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodPost, path, strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if c != nil {
		r.AddCookie(c)
	}
	w := httptest.NewRecorder()
	s.ServeHTTP(w, r)
	return w
}

// TestActionsAreGuarded: an action needs a session, an operator, a
// writable console and the session's CSRF token; each missing piece is
// refused before anything is done.
func TestActionsAreGuarded(t *testing.T) {
	s := newTestConsole(t, false)
	ro := newTestConsole(t, true)
	op, opSess := cookieOf(t, s, RoleOperate)
	rd, rdSess := cookieOf(t, s, RoleRead)
	roOp, roSess := cookieOf(t, ro, RoleOperate)
	_, otherSess := cookieOf(t, s, RoleOperate)
	form := func(csrf string) url.Values {
		return url.Values{"csrf": {csrf}, "app": {"a"}, "tenant": {"t"}, "for": {"15m"}}
	}
	for _, tc := range []struct {
		name   string
		s      *Server
		c      *http.Cookie
		form   url.Values
		status int
		says   string
	}{
		{"no session", s, nil, form(""), http.StatusUnauthorized, "sign in again"},
		{"no CSRF token", s, op, form(""), http.StatusForbidden, "token"},
		{"another session's token", s, op, form(s.seal.csrfToken(otherSess)), http.StatusForbidden, "token"},
		{"a reader", s, rd, form(s.seal.csrfToken(rdSess)), http.StatusForbidden, "operators"},
		{"a read-only console", ro, roOp, form(ro.seal.csrfToken(roSess)), http.StatusForbidden, "read-only"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := post(tc.s, tc.c, "/tenants/pause", tc.form)
			if got.Code != tc.status || !strings.Contains(got.Body.String(), tc.says) {
				t.Fatalf("%d, want %d saying %q:\n%s", got.Code, tc.status, tc.says, got.Body.String())
			}
		})
	}
	// With everything in place the action goes through to NATS, whose
	// limits bucket does not exist here: 503, not a refusal.
	if got := post(s, op, "/tenants/pause", form(s.seal.csrfToken(opSess))); got.Code != http.StatusServiceUnavailable {
		t.Fatalf("an operator's action: %d, want 503 (no limits bucket):\n%s", got.Code, got.Body.String())
	}
}

// TestCookiesAndRedirects: the cookies are Secure, HttpOnly and Lax;
// a cookie sealed for another name or by another key is not a session;
// next= never leaves the console.
func TestCookiesAndRedirects(t *testing.T) {
	c := cookie(sessionCookie, "v", time.Now().Add(time.Hour))
	if !c.Secure || !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Path != "/" || c.Domain != "" {
		t.Fatalf("cookie %+v", c)
	}
	s := newTestConsole(t, false)
	other := newTestConsole(t, false)
	sess := &session{ID: "x", Roles: []string{RoleRead}, Expires: time.Now().Add(time.Hour).Unix()}
	for name, sealed := range map[string]func() string{
		"sealed as the login cookie": func() string { v, _ := s.seal.seal(loginCookie, sess); return v },
		"sealed by another key":      func() string { v, _ := other.seal.seal(sessionCookie, sess); return v },
		"expired": func() string {
			v, _ := s.seal.seal(sessionCookie, session{ID: "x", Roles: []string{RoleRead}, Expires: time.Now().Add(-time.Second).Unix()})
			return v
		},
	} {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.AddCookie(&http.Cookie{Name: sessionCookie, Value: sealed()})
		if s.sessionOf(r) != nil {
			t.Errorf("a cookie %s is a session", name)
		}
	}
	for in, want := range map[string]string{"/jobs?x=1": "/jobs?x=1", "https://evil.example/": "/", "//evil.example": "/", "/\\evil": "/", "": "/", "jobs": "/"} {
		if got := localPath(in); got != want {
			t.Errorf("localPath(%q) = %q, want %q", in, got, want)
		}
	}
}
