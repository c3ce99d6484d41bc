package graph

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"

	msalerrors "github.com/AzureAD/microsoft-authentication-library-for-go/apps/errors"
	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/public"
	"github.com/recoverpasscode/recoverpasscode/wire"
	"github.com/rs/zerolog"
	"golang.org/x/sync/semaphore"
)

// delegatedPermission is the Graph permission recoverPasscode needs.
const delegatedPermission = "DeviceManagementManagedDevices.PrivilegedOperations.All"

// Delegated supplies the access tokens of the one account `worker login` signed in
// (see [SignIn]), refreshing them silently with the refresh token in the cache file
// and writing the refreshed cache back. It implements [TokenSource] and is safe for
// concurrent use.
//
// A delegated account belongs to one tenant, the configured one: a token for any
// other tenant is refused with ErrCredential, so the worker's tenant policy must not
// let such a job through (service.Config.Validate makes sure of it).
//
// Acquisitions are serialized: a cached token costs microseconds, and a refresh is
// made once rather than by every waiting caller. The cache file is read again
// whenever it changes, and once more after a failed acquisition, so a new
// `worker login` reaches a running worker without a restart.
type Delegated struct {
	tenant     string
	scopes     []string
	cache      *tokenCache
	app        public.Client
	sem        *semaphore.Weighted // serializes acquisitions; gives up when the caller's context ends
	generation atomic.Uint64       // counts refreshes; see Refresh
}

var _ TokenSource = (*Delegated)(nil)

// NewDelegated returns a Delegated for cfg, which must select delegated tokens (see
// [CredentialConfig.Delegated]). It reads no file and makes no network call: a
// missing or unusable cache shows in the first Token call. log receives the one
// warning that cannot be an error: refreshed tokens that cannot be written back.
func NewDelegated(cfg CredentialConfig, log zerolog.Logger) (*Delegated, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if !cfg.Delegated() {
		return nil, errors.New("graph: delegated: RECOVER_TOKEN_CACHE must be set, and no app-only credential (AZURE_CLIENT_SECRET, AZURE_CLIENT_CERTIFICATE_PATH, AZURE_FEDERATED_TOKEN_FILE)")
	}
	tc := &tokenCache{path: cfg.TokenCache, log: log}
	app, scope, err := newPublicApp(cfg, tc)
	if err != nil {
		return nil, err
	}
	return &Delegated{tenant: cfg.TenantID, scopes: []string{scope}, cache: tc, app: app, sem: semaphore.NewWeighted(1)}, nil
}

// Token returns an access token of the signed-in account for tenantID ("" means the
// configured tenant, the only one served), from the cache while it is valid, else
// refreshed. A failure matches ErrCredential and says what to do (typically: run
// `worker login` again), unless ctx ended first, in which case it wraps ctx's error.
func (d *Delegated) Token(ctx context.Context, tenantID string) (string, error) {
	if err := d.checkTenant(tenantID); err != nil {
		return "", err
	}
	if err := d.sem.Acquire(ctx, 1); err != nil {
		return "", fmt.Errorf("graph: delegated token for tenant %s: %w", d.tenant, err)
	}
	defer d.sem.Release(1)
	return d.acquire(ctx)
}

// Refresh redeems the refresh token for a new access token, bypassing the cached one,
// and makes it the one Token returns. Callers that overlap one Refresh share its
// token. Errors are as for Token; on failure the cached token stays.
func (d *Delegated) Refresh(ctx context.Context, tenantID string) (string, error) {
	if err := d.checkTenant(tenantID); err != nil {
		return "", err
	}
	gen := d.generation.Load()
	if err := d.sem.Acquire(ctx, 1); err != nil {
		return "", fmt.Errorf("graph: delegated token for tenant %s: %w", d.tenant, err)
	}
	defer d.sem.Release(1)
	if d.generation.Load() != gen { // refreshed while we waited
		return d.acquire(ctx)
	}
	d.cache.forceRefresh(true)
	defer d.cache.forceRefresh(false)
	token, err := d.acquire(ctx)
	if err == nil {
		d.generation.Add(1)
	}
	return token, err
}

// acquire gets a token silently; after a failure it tries once more if the file holds
// another cache than memory (a new login the file's metadata did not reveal).
func (d *Delegated) acquire(ctx context.Context) (string, error) {
	token, err := d.silent(ctx)
	if err != nil && ctx.Err() == nil && d.cache.reload() {
		token, err = d.silent(ctx)
	}
	if err != nil && ctx.Err() != nil {
		return "", fmt.Errorf("graph: delegated token for tenant %s: %w", d.tenant, ctx.Err())
	}
	return token, err
}

// silent picks the signed-in account and asks MSAL for its token, which MSAL serves
// from the cache or gets with the refresh token.
func (d *Delegated) silent(ctx context.Context) (string, error) {
	acct, err := d.account(ctx)
	if err != nil {
		return "", err
	}
	res, err := d.app.AcquireTokenSilent(ctx, d.scopes, public.WithSilentAccount(acct))
	if err == nil {
		return res.AccessToken, nil
	}
	// The MSAL error is flattened to text, so no caller can reach its request or
	// response (errors.Verbose would print them).
	msg := d.cache.redact(msalText(err))
	if entraUnavailable(err) {
		return "", fmt.Errorf("%w: tenant %s: could not refresh the sign-in of %s: Entra ID is unavailable (%s)", ErrCredential, d.tenant, acct.PreferredUsername, msg)
	}
	return "", fmt.Errorf("%w: tenant %s: the sign-in of %s can no longer be refreshed (%s): run `worker login` again", ErrCredential, d.tenant, acct.PreferredUsername, msg)
}

// msalText describes an MSAL error for a person: Entra ID's OAuth error and its
// description (which carries the AADSTS code and trace ID) when it answered with one,
// else the whole message.
func msalText(err error) string {
	var call msalerrors.CallErr
	s := err.Error()
	i := strings.IndexByte(s, '{')
	if !errors.As(err, &call) || i < 0 {
		return s
	}
	var body struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	if json.Unmarshal([]byte(s[i:]), &body) != nil || body.Error == "" {
		return s
	}
	return body.Error + ": " + body.Description
}

// entraUnavailable reports whether err says Entra ID could not be reached or failed
// (a network error, 429 or 5xx), rather than that it refused the refresh token.
func entraUnavailable(err error) bool {
	var call msalerrors.CallErr
	if errors.As(err, &call) {
		return call.Resp != nil && (call.Resp.StatusCode == http.StatusTooManyRequests || call.Resp.StatusCode >= http.StatusInternalServerError)
	}
	var uerr *url.Error
	return errors.As(err, &uerr)
}

// account returns the one account of the configured tenant in the cache.
func (d *Delegated) account(ctx context.Context) (public.Account, error) {
	accounts, err := d.app.Accounts(ctx)
	if err != nil {
		return public.Account{}, fmt.Errorf("%w: tenant %s: %s", ErrCredential, d.tenant, d.cache.redact(err.Error()))
	}
	var match []public.Account
	for _, a := range accounts {
		if strings.EqualFold(a.Realm, d.tenant) || strings.EqualFold(homeTenant(a.HomeAccountID), d.tenant) {
			match = append(match, a)
		}
	}
	switch {
	case len(match) == 1:
		return match[0], nil
	case len(match) > 1:
		return public.Account{}, fmt.Errorf("%w: tenant %s: token cache %s holds %d accounts of the tenant: run `worker login` to replace them with one", ErrCredential, d.tenant, d.cache.path, len(match))
	case len(accounts) > 0:
		return public.Account{}, fmt.Errorf("%w: tenant %s: token cache %s holds a sign-in to another tenant (%s): run `worker login` with this AZURE_TENANT_ID", ErrCredential, d.tenant, d.cache.path, accounts[0].Realm)
	default:
		return public.Account{}, fmt.Errorf("%w: tenant %s: token cache %s holds no signed-in account (it is missing or empty): run `worker login`", ErrCredential, d.tenant, d.cache.path)
	}
}

// checkTenant refuses a tenant other than the signed-in account's.
func (d *Delegated) checkTenant(tenantID string) error {
	if tenantID == "" || strings.EqualFold(tenantID, d.tenant) {
		return nil
	}
	return fmt.Errorf("%w: tenant %q: delegated tokens serve only tenant %s, where the account signed in; another tenant needs app-only credentials", ErrCredential, wire.Truncate(tenantID, maxShownValue), d.tenant)
}

// homeTenant returns the tenant part of an MSAL home account ID ("<oid>.<tid>").
func homeTenant(homeAccountID string) string {
	_, tenant, _ := strings.Cut(homeAccountID, ".")
	return tenant
}

// delegatedScope returns Scope, or the permission's scope on the Graph host.
func (c CredentialConfig) delegatedScope() (string, error) {
	if c.Scope != "" {
		return c.Scope, nil
	}
	s, err := c.scope()
	if err != nil {
		return "", err
	}
	return strings.TrimSuffix(s, ".default") + delegatedPermission, nil
}

// newPublicApp returns an MSAL public client for cfg's tenant that keeps its cache in
// tc, and the scope to ask for.
func newPublicApp(cfg CredentialConfig, tc *tokenCache) (public.Client, string, error) {
	host, err := cfg.authorityHost()
	if err != nil {
		return public.Client{}, "", err
	}
	scope, err := cfg.delegatedScope()
	if err != nil {
		return public.Client{}, "", err
	}
	hc := cfg.HTTPClient
	if hc == nil {
		hc = defaultHTTPClient(credentialTimeout)
	}
	opts := []public.Option{public.WithAuthority(host + "/" + cfg.TenantID), public.WithCache(tc), public.WithHTTPClient(hc)}
	if !strings.EqualFold(host, DefaultAuthorityHost) {
		opts = append(opts, public.WithInstanceDiscovery(false))
	}
	app, err := public.New(cfg.ClientID, opts...)
	if err != nil {
		return public.Client{}, "", fmt.Errorf("graph: delegated: %s", wire.Truncate(printable(err.Error()), maxErrorMessage))
	}
	return app, scope, nil
}
