package gateway

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
)

// discoveryRetry is how long a failed discovery is remembered before the
// next request tries again, so that an Entra ID outage costs one attempt
// per interval, not one per request.
const discoveryRetry = 5 * time.Second

// entra verifies Entra ID access tokens: the signature against the
// tenant's published keys (found by OpenID Connect discovery, cached, and
// fetched again when a token names an unknown key, as after a rollover,
// at most once per keyRefetch: see keySet),
// the issuer, the audience, the expiry, the tenant and an app role; the
// calling application then names the source. It is safe for concurrent
// use.
type entra struct {
	issuer    string
	tenant    string
	audiences []string
	role      string
	apps      map[string]string // lower-case application ID → source
	client    *http.Client

	mu       sync.Mutex
	verifier *oidc.IDTokenVerifier
	keys     *keySet
	failedAt time.Time
	failure  error
}

func newEntra(cfg Config) *entra {
	e := &entra{
		tenant:    strings.ToLower(cfg.TenantID),
		audiences: cfg.Audiences,
		role:      cfg.Role,
		apps:      map[string]string{},
		client:    cfg.HTTPClient,
	}
	e.issuer = cfg.AuthorityHost + "/" + url.PathEscape(e.tenant) + "/v2.0"
	for _, s := range cfg.Sources {
		for _, a := range s.EntraApps {
			e.apps[strings.ToLower(a)] = s.Name
		}
	}
	return e
}

// ready returns the verifier, running discovery on first use and again
// after a failure once discoveryRetry has passed.
func (e *entra) ready(ctx context.Context) (*oidc.IDTokenVerifier, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.verifier != nil {
		return e.verifier, nil
	}
	if e.failure != nil && time.Since(e.failedAt) < discoveryRetry {
		return nil, e.failure
	}
	// Its failure is remembered for other requests: this one's cancel
	// must not cause it.
	dctx, cancel := context.WithTimeout(oidc.ClientContext(context.WithoutCancel(ctx), e.client), 10*time.Second)
	defer cancel()
	jwksURL, err := discover(dctx, e.issuer)
	if err != nil {
		e.failedAt, e.failure = time.Now(), fmt.Errorf("entra: discovery at %s: %w", e.issuer, err)
		return nil, e.failure
	}
	e.keys = newKeySet(jwksURL, e.client, keyRefetch)
	// The audience is checked below against every accepted value.
	e.verifier = oidc.NewVerifier(e.issuer, e.keys, &oidc.Config{SkipClientIDCheck: true, SupportedSigningAlgs: []string{oidc.RS256}})
	e.failure = nil
	return e.verifier, nil
}

// discover reads issuer's discovery document (go-oidc checks that it
// names issuer) and returns its jwks_uri.
func discover(ctx context.Context, issuer string) (string, error) {
	p, err := oidc.NewProvider(ctx, issuer)
	if err != nil {
		return "", err
	}
	var doc struct {
		JWKSURL string `json:"jwks_uri"`
	}
	if err := p.Claims(&doc); err != nil {
		return "", err
	}
	u, err := url.Parse(doc.JWKSURL)
	if err != nil || u.Scheme != "https" && u.Scheme != "http" || u.Host == "" {
		return "", fmt.Errorf("the jwks_uri %q is not an HTTP URL", doc.JWKSURL)
	}
	return doc.JWKSURL, nil
}

// problem reports discovery's last failure, for /readyz; nil when it
// worked or has not run.
func (e *entra) problem() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.failure
}

// tokenClaims are the claims of an access token the gateway reads.
type tokenClaims struct {
	Tid   string   `json:"tid"`
	Azp   string   `json:"azp"`   // v2.0 tokens
	AppID string   `json:"appid"` // v1.0 tokens
	Roles []string `json:"roles"`
}

// verify checks an access token and returns the source its application
// names. Authentication failures are 401; a valid token whose application
// lacks the role or names no source is 403.
func (e *entra) verify(ctx context.Context, raw string) (source string, perr *problemError) {
	v, err := e.ready(ctx)
	if err != nil {
		return "", newProblem(ProblemUnavailable, http.StatusServiceUnavailable,
			"access tokens cannot be verified now: Entra ID's discovery document or keys could not be read; retry shortly, or use an API key").withRetryAfter(discoveryRetry)
	}
	tok, err := v.Verify(ctx, raw)
	if err != nil {
		return "", unauthenticated("invalid_token", tokenFailure(err, e.issuer))
	}
	if !slices.ContainsFunc(tok.Audience, func(a string) bool { return slices.Contains(e.audiences, a) }) {
		return "", unauthenticated("invalid_token", "the access token is for another audience than this API (GATEWAY_AUDIENCE): request it with the scope <this API's application ID URI>/.default")
	}
	var c tokenClaims
	if err := tok.Claims(&c); err != nil {
		return "", unauthenticated("invalid_token", "the access token's claims are not readable")
	}
	if !strings.EqualFold(c.Tid, e.tenant) {
		return "", unauthenticated("invalid_token", "the access token is of another tenant than AZURE_TENANT_ID")
	}
	app := strings.ToLower(c.Azp)
	if app == "" {
		app = strings.ToLower(c.AppID)
	}
	if app == "" {
		return "", unauthenticated("invalid_token", "the access token names no calling application (azp or appid)")
	}
	source, ok := e.apps[app]
	if !ok {
		return "", newProblem(ProblemNotAllowed, http.StatusForbidden, "application %s is not configured for any source (GATEWAY_CONFIG entraApps, or GATEWAY_SOURCES app:<client id>)", app)
	}
	if !slices.Contains(c.Roles, e.role) {
		return "", newProblem(ProblemNotAllowed, http.StatusForbidden, "application %s does not hold the app role %s of this API: assign it under the API's app roles, and grant admin consent", app, e.role)
	}
	return source, nil
}

// tokenFailure says in a person's terms why go-oidc refused a token,
// without repeating the token.
func tokenFailure(err error, issuer string) string {
	var expired *oidc.TokenExpiredError
	msg := err.Error()
	switch {
	case errors.As(err, &expired):
		return fmt.Sprintf("the access token expired at %s: get a new one", expired.Expiry.UTC().Format(time.RFC3339))
	case strings.Contains(msg, "malformed jwt"):
		return "the bearer credential is neither a valid JWT access token nor an API key"
	case strings.Contains(msg, "verify signature"):
		return "the access token's signature is not by one of the tenant's published keys"
	case strings.Contains(msg, "issued by a different provider"):
		return fmt.Sprintf("the access token was not issued by %s: request a v2.0 token of this tenant (the API's manifest sets requestedAccessTokenVersion to 2)", issuer)
	case strings.Contains(msg, "nbf"):
		return "the access token is not valid yet (nbf)"
	default:
		return "the access token is not valid"
	}
}
