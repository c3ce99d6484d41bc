package graph

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// DeviceCode is what the person signing in needs: a page to open, on any device, and
// the code to enter there.
type DeviceCode struct {
	// VerificationURL is the page to open.
	VerificationURL string
	// UserCode is the code to enter on it.
	UserCode string
	// Message is Entra ID's own instruction, naming both.
	Message string
	// ExpiresOn is when the code stops working.
	ExpiresOn time.Time
}

// SignedIn describes the account a sign-in stored.
type SignedIn struct {
	// UPN is the account's user principal name.
	UPN string
	// TenantID is the account's tenant, as Entra ID named it in the ID token.
	TenantID string
	// TokenCache is the absolute path of the cache file written.
	TokenCache string
}

// SignIn signs an account in with the device code flow and writes its tokens to a
// new token cache at cfg.TokenCache (mode 0600, replacing the file atomically), for
// [Delegated] to use. The app-only fields of cfg are ignored. show receives the code
// to pass on to the person; SignIn then waits until they have signed in, declined,
// or the code expired, or ctx ends. It checks that the cache's directory is writable
// (creating it, mode 0700, if needed) before asking for a code.
func SignIn(ctx context.Context, cfg CredentialConfig, show func(DeviceCode)) (SignedIn, error) {
	cfg.ClientSecret, cfg.CertificatePath, cfg.CertificatePassword, cfg.FederatedTokenFile = "", "", "", ""
	if cfg.TokenCache == "" {
		return SignedIn{}, errors.New("graph: sign in: RECOVER_TOKEN_CACHE is required: where to write the tokens")
	}
	if err := cfg.Validate(); err != nil {
		return SignedIn{}, err
	}
	path, err := filepath.Abs(cfg.TokenCache)
	if err != nil {
		return SignedIn{}, fmt.Errorf("graph: sign in: RECOVER_TOKEN_CACHE: %w", err)
	}
	if err := checkWritableDir(filepath.Dir(path)); err != nil {
		return SignedIn{}, err
	}
	tc := &tokenCache{path: path, strict: true}
	app, scope, err := newPublicApp(cfg, tc)
	if err != nil {
		return SignedIn{}, err
	}
	dc, err := app.AcquireTokenByDeviceCode(ctx, []string{scope})
	if err != nil {
		return SignedIn{}, signInFailure(ctx, tc, err)
	}
	show(DeviceCode{
		VerificationURL: dc.Result.VerificationURL,
		UserCode:        dc.Result.UserCode,
		Message:         dc.Result.Message,
		ExpiresOn:       dc.Result.ExpiresOn,
	})
	res, err := dc.AuthenticationResult(ctx)
	if err != nil {
		return SignedIn{}, signInFailure(ctx, tc, err)
	}
	tenant := res.IDToken.TenantID
	if tenant == "" {
		tenant = homeTenant(res.Account.HomeAccountID)
	}
	return SignedIn{UPN: res.Account.PreferredUsername, TenantID: tenant, TokenCache: path}, nil
}

// signInFailure describes a failed sign-in without any token.
func signInFailure(ctx context.Context, tc *tokenCache, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("graph: sign in: %w", ctx.Err())
	}
	return fmt.Errorf("graph: sign in: %s", tc.redact(msalText(err)))
}

// checkWritableDir makes sure a file can be created in dir, before a person signs in
// for nothing.
func checkWritableDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("graph: sign in: token cache directory: %w", err)
	}
	f, err := os.CreateTemp(dir, ".recoverpasscode-write-check-*")
	if err != nil {
		return fmt.Errorf("graph: sign in: token cache directory is not writable: %w", err)
	}
	name := f.Name()
	_ = f.Close()
	return os.Remove(name)
}
