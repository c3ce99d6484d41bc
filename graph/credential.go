package graph

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/confidential"
	"github.com/recoverpasscode/recoverpasscode/wire"
	"golang.org/x/sync/semaphore"
)

// DefaultAuthorityHost is the Entra ID host of the public cloud.
const DefaultAuthorityHost = "https://login.microsoftonline.com"

// credentialTimeout bounds one request to Entra ID made with the default HTTP client.
const credentialTimeout = 30 * time.Second

// CredentialConfig configures a token source. Its fields mirror the AZURE_* variables
// of the Azure SDKs. One of ClientSecret, CertificatePath and FederatedTokenFile
// selects app-only tokens ([NewCredential]); with none of them, TokenCache selects
// delegated tokens ([NewDelegated]).
type CredentialConfig struct {
	// TenantID is the default tenant (AZURE_TENANT_ID): a GUID or a domain name. Required.
	TenantID string
	// ClientID is the app registration's application ID (AZURE_CLIENT_ID), a GUID.
	// Required.
	ClientID string
	// ClientSecret authenticates with a client secret (AZURE_CLIENT_SECRET).
	ClientSecret string
	// CertificatePath authenticates with a certificate (AZURE_CLIENT_CERTIFICATE_PATH):
	// a PEM file holding the certificate and its RSA key (the key may be an encrypted
	// PKCS#8 block), or a PKCS#12 file (.pfx, .p12). The file is read once, by
	// NewCredential.
	CertificatePath string
	// CertificatePassword decrypts the certificate's key
	// (AZURE_CLIENT_CERTIFICATE_PASSWORD).
	CertificatePassword string
	// FederatedTokenFile authenticates with workload identity federation
	// (AZURE_FEDERATED_TOKEN_FILE). The file is read again for every token request,
	// since Kubernetes rotates it.
	FederatedTokenFile string
	// AuthorityHost is the Entra ID host (AZURE_AUTHORITY_HOST). With any other host
	// than the default, MSAL's instance discovery is off, since it would ask the public
	// cloud. Defaults to https://login.microsoftonline.com.
	AuthorityHost string
	// Scope is the scope requested. Defaults to "<scheme>://<host of GraphBaseURL>/.default"
	// for app-only tokens, and for delegated tokens to
	// "<scheme>://<host of GraphBaseURL>/DeviceManagementManagedDevices.PrivilegedOperations.All".
	Scope string
	// GraphBaseURL is the Graph root (GRAPH_BASE_URL), used for the default Scope.
	// Defaults to https://graph.microsoft.com/v1.0.
	GraphBaseURL string
	// HTTPClient carries the requests to Entra ID; trust for a private CA comes from
	// its transport (by default the system pool, which honours SSL_CERT_FILE). Defaults
	// to a client with a 30s limit per request.
	HTTPClient *http.Client
	// TokenCache is the file holding the MSAL token cache of the account `worker login`
	// signed in (RECOVER_TOKEN_CACHE). It selects delegated tokens when none of
	// ClientSecret, CertificatePath and FederatedTokenFile is set, and is ignored
	// otherwise.
	TokenCache string
}

// Delegated reports whether c selects delegated tokens: TokenCache is set and no
// app-only credential is.
func (c CredentialConfig) Delegated() bool {
	return c.TokenCache != "" && c.ClientSecret == "" && c.CertificatePath == "" && c.FederatedTokenFile == ""
}

// Validate reports the first problem with c, naming the variable to fix.
func (c CredentialConfig) Validate() error {
	switch {
	case c.TenantID == "":
		return errors.New("graph: credential: AZURE_TENANT_ID is required")
	case !validTenant(c.TenantID):
		return fmt.Errorf("graph: credential: AZURE_TENANT_ID %q must be a tenant GUID or domain name", wire.Truncate(c.TenantID, maxShownValue))
	case c.ClientID == "":
		return errors.New("graph: credential: AZURE_CLIENT_ID is required")
	case !wire.IsGUID(c.ClientID):
		return fmt.Errorf("graph: credential: AZURE_CLIENT_ID %q must be the application (client) ID, a GUID", wire.Truncate(c.ClientID, maxShownValue))
	case c.CertificatePassword != "" && c.CertificatePath == "":
		return errors.New("graph: credential: AZURE_CLIENT_CERTIFICATE_PASSWORD is set without AZURE_CLIENT_CERTIFICATE_PATH")
	}
	var set []string
	for _, m := range []struct{ name, value string }{
		{"AZURE_CLIENT_SECRET", c.ClientSecret},
		{"AZURE_CLIENT_CERTIFICATE_PATH", c.CertificatePath},
		{"AZURE_FEDERATED_TOKEN_FILE", c.FederatedTokenFile},
	} {
		if m.value != "" {
			set = append(set, m.name)
		}
	}
	switch {
	case len(set) == 0 && c.TokenCache == "":
		return errors.New("graph: credential: set one of AZURE_CLIENT_SECRET, AZURE_CLIENT_CERTIFICATE_PATH or AZURE_FEDERATED_TOKEN_FILE for app-only tokens, or RECOVER_TOKEN_CACHE (written by `worker login`) for delegated tokens")
	case len(set) > 1:
		return fmt.Errorf("graph: credential: %s are set; set only one", strings.Join(set, ", "))
	}
	if _, err := c.authorityHost(); err != nil {
		return err
	}
	if _, err := c.scope(); err != nil {
		return err
	}
	return nil
}

// authorityHost returns AuthorityHost (or its default) without a trailing slash.
func (c CredentialConfig) authorityHost() (string, error) {
	if c.AuthorityHost == "" {
		return DefaultAuthorityHost, nil
	}
	u, err := url.Parse(c.AuthorityHost)
	if err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil ||
		strings.Trim(u.Path, "/") != "" || u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("graph: credential: AZURE_AUTHORITY_HOST %q must be https://host with no path", c.AuthorityHost)
	}
	return "https://" + u.Host, nil
}

// scope returns Scope or the one derived from GraphBaseURL.
func (c CredentialConfig) scope() (string, error) {
	if c.Scope != "" {
		return c.Scope, nil
	}
	base, err := parseBaseURL(c.GraphBaseURL)
	if err != nil {
		return "", fmt.Errorf("graph: credential: %w", err)
	}
	u, _ := url.Parse(base) // parseBaseURL checked it
	return u.Scheme + "://" + u.Host + "/.default", nil
}

// validTenant accepts a tenant GUID or a DNS name such as contoso.onmicrosoft.com, and
// so nothing that could change the authority URL's path.
func validTenant(s string) bool {
	return wire.IsGUID(s) || wire.IsDNSName(s, 253)
}

// Credential is an app-only (confidential client) credential for one app registration,
// for its default tenant and any other tenant a job names. It implements [TokenSource]
// and is safe for concurrent use. [Delegated] is the TokenSource for a signed-in
// account instead.
//
// Each tenant has its own MSAL client and token cache. Token calls for one tenant are
// serialized: a cache hit costs microseconds, and a miss is fetched once rather than by
// every waiting caller. Refresh replaces the tenant's client with a new one, whose empty
// cache forces a request to Entra ID; later Token calls read the new token from it.
type Credential struct {
	clientID      string
	defaultTenant string
	authorityHost string
	scopes        []string
	cred          confidential.Credential
	options       []confidential.Option
	secrets       []string               // values redacted from error text
	assertion     atomic.Pointer[string] // the last federated token read, also redacted

	mu      sync.Mutex
	tenants map[string]*tenantApp // by lower-case tenant ID
}

var _ TokenSource = (*Credential)(nil)

// tenantApp is one tenant's MSAL client. The one-slot sem guards app (a lock that
// gives up when the caller's context ends); generation counts refreshes so that
// callers who waited on one refresh share its token.
type tenantApp struct {
	tenant     string
	sem        *semaphore.Weighted
	generation atomic.Uint64
	app        confidential.Client
	// cached is the last token and when to stop using it without asking
	// MSAL, so the hot path neither queues on sem nor walks MSAL's cache.
	cached atomic.Pointer[cachedToken]
}

// cachedToken is a token and the time to refresh it: five minutes before
// it expires, as MSAL does.
type cachedToken struct {
	token     string
	refreshAt time.Time
}

// remember keeps token for the hot path until five minutes before expires.
func (t *tenantApp) remember(token string, expires time.Time) {
	t.cached.Store(&cachedToken{token: token, refreshAt: expires.Add(-5 * time.Minute)})
}

// NewCredential returns a Credential for cfg. It reads the certificate file, if any,
// but makes no network call.
func NewCredential(cfg CredentialConfig) (*Credential, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Delegated() {
		return nil, errors.New("graph: credential: no app-only credential is set (RECOVER_TOKEN_CACHE alone selects delegated tokens: use NewDelegated)")
	}
	host, _ := cfg.authorityHost()
	scope, _ := cfg.scope()
	c := &Credential{
		clientID:      cfg.ClientID,
		defaultTenant: cfg.TenantID,
		authorityHost: host,
		scopes:        []string{scope},
		tenants:       map[string]*tenantApp{},
	}
	if err := c.setCredential(cfg); err != nil {
		return nil, err
	}
	hc := cfg.HTTPClient
	if hc == nil {
		hc = defaultHTTPClient(credentialTimeout)
	}
	c.options = []confidential.Option{confidential.WithHTTPClient(hc)}
	if !strings.EqualFold(host, DefaultAuthorityHost) {
		c.options = append(c.options, confidential.WithInstanceDiscovery(false))
	}
	if _, err := c.tenant(""); err != nil { // surface authority errors now
		return nil, err
	}
	return c, nil
}

// setCredential builds the MSAL credential for the one method cfg sets.
func (c *Credential) setCredential(cfg CredentialConfig) error {
	var err error
	switch {
	case cfg.ClientSecret != "":
		c.secrets = append(c.secrets, cfg.ClientSecret)
		c.cred, err = confidential.NewCredFromSecret(cfg.ClientSecret)
	case cfg.CertificatePath != "":
		if cfg.CertificatePassword != "" {
			c.secrets = append(c.secrets, cfg.CertificatePassword)
		}
		c.cred, err = loadCertificate(cfg.CertificatePath, cfg.CertificatePassword)
	default:
		path := cfg.FederatedTokenFile
		c.cred = confidential.NewCredFromAssertionCallback(func(context.Context, confidential.AssertionRequestOptions) (string, error) {
			return c.readAssertion(path)
		})
	}
	if err != nil {
		return fmt.Errorf("graph: credential: %s", c.redact(err.Error()))
	}
	return nil
}

// readAssertion reads the federated token file; Kubernetes rewrites it before expiry.
func (c *Credential) readAssertion(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read AZURE_FEDERATED_TOKEN_FILE: %w", err)
	}
	a := strings.TrimSpace(string(b))
	if a == "" {
		return "", fmt.Errorf("AZURE_FEDERATED_TOKEN_FILE %s is empty", path)
	}
	c.assertion.Store(&a)
	return a, nil
}

// Token returns an access token for tenantID ("" means the default tenant), from the
// tenant's cache when it holds a valid one. A failure matches ErrCredential, unless ctx
// ended first, in which case it wraps ctx's error. A malformed tenantID is an error that
// does not match ErrCredential: it is the caller's mistake, not the credentials'.
func (c *Credential) Token(ctx context.Context, tenantID string) (string, error) {
	ta, err := c.tenant(tenantID)
	if err != nil {
		return "", err
	}
	if ct := ta.cached.Load(); ct != nil && time.Now().Before(ct.refreshAt) {
		return ct.token, nil
	}
	if err := ta.sem.Acquire(ctx, 1); err != nil {
		return "", fmt.Errorf("graph: token for tenant %s: %w", ta.tenant, err)
	}
	defer ta.sem.Release(1)
	return c.acquire(ctx, ta, ta.app)
}

// Refresh fetches a new access token for tenantID from Entra ID, bypassing the cache,
// and makes it the one Token returns. Callers that overlap one Refresh of the same
// tenant share its token rather than each fetching one. Errors are as for Token.
func (c *Credential) Refresh(ctx context.Context, tenantID string) (string, error) {
	ta, err := c.tenant(tenantID)
	if err != nil {
		return "", err
	}
	gen := ta.generation.Load()
	if err := ta.sem.Acquire(ctx, 1); err != nil {
		return "", fmt.Errorf("graph: token for tenant %s: %w", ta.tenant, err)
	}
	defer ta.sem.Release(1)
	if ta.generation.Load() != gen { // refreshed while we waited
		return c.acquire(ctx, ta, ta.app)
	}
	app, err := c.newApp(ta.tenant)
	if err != nil {
		return "", err
	}
	token, err := c.acquire(ctx, ta, app)
	if err != nil {
		return "", err // keep the old client: its token may still be good
	}
	ta.app = app
	ta.generation.Add(1)
	return token, nil
}

// acquire asks app for a token: MSAL's AcquireTokenByCredential reads the app-token
// cache first and requests a token only on a miss (or when the token is due for a
// proactive refresh).
func (c *Credential) acquire(ctx context.Context, ta *tenantApp, app confidential.Client) (string, error) {
	tenant := ta.tenant
	res, err := app.AcquireTokenByCredential(ctx, c.scopes)
	if err == nil {
		ta.remember(res.AccessToken, res.ExpiresOn)
		return res.AccessToken, nil
	}
	if ctx.Err() != nil {
		return "", fmt.Errorf("graph: token for tenant %s: %w", tenant, ctx.Err())
	}
	// The MSAL error is flattened to text, so no caller can reach its request or
	// response (errors.Verbose would print them).
	return "", fmt.Errorf("%w: tenant %s: %s", ErrCredential, tenant, c.redact(err.Error()))
}

// tenant returns the tenantApp for tenantID, creating it on first use.
func (c *Credential) tenant(tenantID string) (*tenantApp, error) {
	if tenantID == "" {
		tenantID = c.defaultTenant
	}
	if !validTenant(tenantID) {
		return nil, fmt.Errorf("graph: token: tenant %q must be a GUID or domain name", wire.Truncate(tenantID, maxShownValue))
	}
	key := strings.ToLower(tenantID)
	c.mu.Lock()
	defer c.mu.Unlock()
	if ta, ok := c.tenants[key]; ok {
		return ta, nil
	}
	app, err := c.newApp(tenantID)
	if err != nil {
		return nil, err
	}
	ta := &tenantApp{tenant: tenantID, sem: semaphore.NewWeighted(1), app: app}
	c.tenants[key] = ta
	return ta, nil
}

// newApp returns an MSAL client with an empty cache for tenant's authority.
func (c *Credential) newApp(tenant string) (confidential.Client, error) {
	app, err := confidential.New(c.authorityHost+"/"+tenant, c.clientID, c.cred, c.options...)
	if err != nil {
		return confidential.Client{}, fmt.Errorf("%w: tenant %s: %s", ErrCredential, tenant, c.redact(err.Error()))
	}
	return app, nil
}

// redact removes every secret value from s and bounds its length.
func (c *Credential) redact(s string) string {
	for _, v := range c.secrets {
		s = strings.ReplaceAll(s, v, "[redacted]")
	}
	if a := c.assertion.Load(); a != nil {
		s = strings.ReplaceAll(s, *a, "[redacted]")
	}
	return wire.Truncate(printable(s), maxErrorMessage)
}
