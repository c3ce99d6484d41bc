package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/recoverpasscode/recoverpasscode/graph"
	"github.com/recoverpasscode/recoverpasscode/internal/envflag"
)

const loginUsageHeader = `worker login signs a service account in to Entra ID with the device code flow and
writes its tokens to a token cache file (mode 0600). A worker given that file in
RECOVER_TOKEN_CACHE, and no app-only credential, then calls Graph with the account's
delegated permission, refreshing its tokens silently.

Usage:
  worker login --token-cache FILE [flags]

It prints a web address and a code: open the address on any device, enter the code and
sign in as the service account. Run it again when the worker's /readyz or log asks for
it (the account's sessions were revoked, its password reset, or its sign-in went
unused for 90 days); a running worker picks the new file up by itself. There is no
--dev sign-in: worker --dev uses app-only tokens from its own in-process double.

Every flag can also be set by the environment variable in brackets; a flag wins.

Flags:
`

// parseLoginConfig reads the flags of worker login and the environment.
func parseLoginConfig(args []string) (graph.CredentialConfig, error) {
	fs := flag.NewFlagSet("worker login", flag.ContinueOnError)
	s := envflag.New(fs)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), loginUsageHeader)
		fs.PrintDefaults()
	}
	var c graph.CredentialConfig
	s.StringVar(&c.TokenCache, "token-cache", "RECOVER_TOKEN_CACHE", "", "file to write the tokens to, replacing it (required)")
	s.StringVar(&c.TenantID, "tenant-id", "AZURE_TENANT_ID", "", "tenant of the service account; the worker serves this tenant only (required)")
	s.StringVar(&c.ClientID, "client-id", "AZURE_CLIENT_ID", "", "app registration (client) id, with public client flows allowed (required)")
	s.StringVar(&c.AuthorityHost, "authority-host", "AZURE_AUTHORITY_HOST", graph.DefaultAuthorityHost, "Entra ID host; a non-default host turns MSAL instance discovery off")
	s.StringVar(&c.GraphBaseURL, "graph-base-url", "GRAPH_BASE_URL", graph.DefaultBaseURL, "Graph root including the version; its host names the permission's resource")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q (see worker login --help)", fs.Arg(0))
	}
	if err := s.Err(); err != nil {
		return c, err
	}
	if c.TokenCache == "" {
		return c, errors.New("RECOVER_TOKEN_CACHE (--token-cache) is required: the file to write the tokens to")
	}
	return c, c.Validate()
}

// runLogin signs the account in, telling the person at out what to do and, at the
// end, who signed in and where the tokens are; never the tokens.
func runLogin(ctx context.Context, cfg graph.CredentialConfig, out io.Writer) error {
	res, err := graph.SignIn(ctx, cfg, func(dc graph.DeviceCode) {
		fmt.Fprintf(out, "To sign in, open %s and enter the code %s\n", dc.VerificationURL, dc.UserCode)
		fmt.Fprintf(out, "Sign in as the service account the worker is to act as. Waiting (the code expires at %s)...\n\n",
			dc.ExpiresOn.Local().Format(time.TimeOnly))
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "Signed in as %s (tenant %s).\n", res.UPN, res.TenantID)
	fmt.Fprintf(out, "Token cache written to %s (mode 0600).\n", res.TokenCache)
	fmt.Fprintf(out, "Run the worker with RECOVER_TOKEN_CACHE=%s and no AZURE_CLIENT_SECRET, certificate or federated token.\n", res.TokenCache)
	return nil
}

// login runs worker login with args and returns the exit code: 0 when signed in,
// 1 when the sign-in failed, 2 for a usage error.
func login(args []string, stdout, stderr io.Writer) int {
	cfg, err := parseLoginConfig(args)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "worker login:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := runLogin(ctx, cfg, stdout); err != nil {
		fmt.Fprintln(stderr, "worker login:", err)
		return 1
	}
	return 0
}
