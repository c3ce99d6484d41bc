package main

import (
	"encoding/base64"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/recoverpasscode/recoverpasscode/console"
	"github.com/recoverpasscode/recoverpasscode/gateway"
	"github.com/recoverpasscode/recoverpasscode/history"
	"github.com/recoverpasscode/recoverpasscode/internal/envflag"
	"github.com/recoverpasscode/recoverpasscode/wire"
)

// consoleFlags are the settings of the web console, which the gateway
// serves when GATEWAY_CONSOLE_CLIENT_ID is set.
type consoleFlags struct {
	ClientID, ClientSecret, URL, SessionKey string
	ReadOnly                                bool
}

func (c *consoleFlags) define(s *envflag.Set) {
	s.StringVar(&c.ClientID, "console-client-id", "GATEWAY_CONSOLE_CLIENT_ID", "", "the console's app registration (application id); serves the web console at / when set (its NATS user needs console.NATSPermissions: user console of deploy/nats/accounts.conf, NATS_INBOX_PREFIX=_INBOX.console)")
	s.SecretVar(&c.ClientSecret, "console-client-secret", "GATEWAY_CONSOLE_CLIENT_SECRET", "client secret of the console's app registration (without it the sign-in code is redeemed with PKCE alone)")
	s.StringVar(&c.URL, "console-url", "GATEWAY_CONSOLE_URL", "", "the console's origin as browsers reach it, e.g. https://recoverpasscode.example.com; its redirect URI is this plus "+console.CallbackPath)
	s.SecretVar(&c.SessionKey, "console-session-key", "GATEWAY_CONSOLE_SESSION_KEY", "base64 of 32 random bytes sealing the console's cookies, the same on every replica (default: random at start, so sessions end with the process)")
	s.BoolVar(&c.ReadOnly, "console-readonly", "GATEWAY_CONSOLE_READONLY", false, "serve the console without any action (no replay, release, pause or resume), whatever the roles say")
}

// check reports a console setting that cannot work, before connecting.
func (c *consoleFlags) check(g gateway.Config) error {
	if c.ClientID == "" {
		if c.URL != "" || c.ClientSecret != "" {
			return errors.New("GATEWAY_CONSOLE_URL or _CLIENT_SECRET is set without GATEWAY_CONSOLE_CLIENT_ID: set it to serve the console")
		}
		return nil
	}
	_, err := c.key()
	if err == nil {
		err = consoleValidate(c.config(g, nil, nil))
	}
	return err
}

func (c *consoleFlags) key() ([]byte, error) {
	if c.SessionKey == "" {
		return nil, nil
	}
	key, err := base64.StdEncoding.DecodeString(c.SessionKey)
	if err != nil {
		return nil, fmt.Errorf("GATEWAY_CONSOLE_SESSION_KEY: want base64 (openssl rand -base64 32): %w", err)
	}
	return key, nil
}

func (c *consoleFlags) config(g gateway.Config, js jetstream.JetStream, log *zerolog.Logger) console.Config {
	key, _ := c.key()
	cfg := console.Config{
		JetStream: js, Prefix: g.Prefix, TenantID: g.TenantID, ClientID: c.ClientID, ClientSecret: c.ClientSecret,
		AuthorityHost: g.AuthorityHost, BaseURL: c.URL, ReadOnly: c.ReadOnly, SessionKey: key, Log: log,
	}
	if js != nil {
		cfg.History = history.New(js, wire.Names{Prefix: g.Prefix})
	}
	return cfg
}

// consoleValidate is Validate without the connection, which comes later.
func consoleValidate(cfg console.Config) error {
	var errs []error
	for _, err := range splitJoined(cfg.Validate()) {
		if !errors.Is(err, console.ErrNoJetStream) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// newConsole is the console of the gateway, or nil when it is off.
func (c *consoleFlags) newConsole(g gateway.Config, js jetstream.JetStream, log *zerolog.Logger) (*console.Server, error) {
	if c.ClientID == "" {
		return nil, nil
	}
	return console.New(c.config(g, js, log))
}
