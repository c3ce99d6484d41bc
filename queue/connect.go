package queue

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"
	"unicode"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/recoverpasscode/recoverpasscode/internal/envflag"
)

// DefaultURL is where NATS is looked for when NATS_URL is not set.
const DefaultURL = "nats://127.0.0.1:4222"

// Conn holds the NATS connection settings (NATS_* variables).
type Conn struct {
	// URL is one or more server URLs, comma-separated. Defaults to
	// nats://127.0.0.1:4222.
	URL string
	// Creds is a credentials file (JWT and nkey seed).
	Creds string
	// NKey is an nkey seed file.
	NKey string
	// User and Password authenticate with a username and password.
	User, Password string
	// CA, Cert and Key configure TLS: a CA to trust, and a client
	// certificate and key for mutual TLS.
	CA, Cert, Key string
	// InboxPrefix replaces nats.go's "_INBOX" at the head of every inbox
	// this connection creates: the replies to its requests, JetStream API
	// responses and publish acknowledgements, and the messages its pull and
	// ordered consumers receive. A server that lets each user subscribe to
	// its own "_INBOX.<user>.>" only (deploy/nats/accounts.conf) needs it,
	// so that no user can read another's replies. Empty keeps "_INBOX".
	InboxPrefix string
}

// Flags defines the connection flags on s, defaulting to NATS_*.
func (c *Conn) Flags(s *envflag.Set) {
	s.StringVar(&c.URL, "nats-url", "NATS_URL", DefaultURL, "NATS server URL(s), comma-separated")
	s.StringVar(&c.Creds, "nats-creds", "NATS_CREDS", "", "NATS credentials file")
	s.StringVar(&c.NKey, "nats-nkey", "NATS_NKEY", "", "NATS nkey seed file")
	s.StringVar(&c.User, "nats-user", "NATS_USER", "", "NATS user")
	s.SecretVar(&c.Password, "nats-password", "NATS_PASSWORD", "NATS password; prefer the variable, flags show in process lists")
	s.StringVar(&c.CA, "nats-ca", "NATS_CA", "", "CA certificate file to trust for NATS TLS")
	s.StringVar(&c.Cert, "nats-cert", "NATS_CERT", "", "client certificate file for NATS TLS")
	s.StringVar(&c.Key, "nats-key", "NATS_KEY", "", "client key file for NATS TLS")
	s.StringVar(&c.InboxPrefix, "nats-inbox-prefix", "NATS_INBOX_PREFIX", "", "prefix of the inboxes this client receives replies, acknowledgements and consumed messages on: _INBOX.<user> where the server lets each user read only its own _INBOX.<user>.> (deploy/nats/accounts.conf); empty: _INBOX")
}

// Validate reports settings that cannot work together.
func (c Conn) Validate() error {
	var errs []error
	methods := 0
	for _, set := range []bool{c.Creds != "", c.NKey != "", c.User != ""} {
		if set {
			methods++
		}
	}
	if methods > 1 {
		errs = append(errs, errors.New("choose one NATS authentication: NATS_CREDS, NATS_NKEY or NATS_USER/NATS_PASSWORD"))
	}
	if c.Password != "" && c.User == "" {
		errs = append(errs, errors.New("NATS_PASSWORD is set without NATS_USER"))
	}
	if (c.Cert == "") != (c.Key == "") {
		errs = append(errs, errors.New("NATS_CERT and NATS_KEY go together"))
	}
	if c.InboxPrefix != "" && !validInboxPrefix(c.InboxPrefix) {
		errs = append(errs, fmt.Errorf("NATS_INBOX_PREFIX %q: want a subject such as _INBOX.worker: tokens of printable characters joined by single dots, with no wildcard (* or >), space or trailing dot, at most %d bytes", c.InboxPrefix, maxInboxPrefix))
	}
	return errors.Join(errs...)
}

// maxInboxPrefix bounds an inbox prefix so that the inboxes built on it
// (prefix, a 22-character unique token and a reply token) stay short
// subjects.
const maxInboxPrefix = 128

// validInboxPrefix reports whether p can head inbox subjects: a subject
// without wildcards, since every inbox is p followed by more tokens.
func validInboxPrefix(p string) bool {
	if len(p) > maxInboxPrefix {
		return false
	}
	for _, tok := range strings.Split(p, ".") {
		if tok == "" {
			return false
		}
		for _, r := range tok {
			if r <= ' ' || r == 0x7f || r == '*' || r == '>' || unicode.IsSpace(r) || unicode.IsControl(r) {
				return false
			}
		}
	}
	return true
}

// Options returns the nats.go options for these settings, plus sensible
// reconnect behaviour: keep trying forever, logging each change.
func (c Conn) Options(name string, log zerolog.Logger) ([]nats.Option, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	opts := []nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(time.Second),
		nats.ReconnectJitter(500*time.Millisecond, time.Second),
		nats.RetryOnFailedConnect(true),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil { // nil on a deliberate close
				log.Warn().Err(err).Msg("disconnected from NATS")
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info().Str("server", nc.ConnectedUrlRedacted()).Msg("reconnected to NATS")
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			ev := log.Warn().Err(err)
			if sub != nil {
				ev = ev.Str("subject", sub.Subject)
			}
			ev.Msg("NATS error")
		}),
	}
	switch {
	case c.Creds != "":
		opts = append(opts, nats.UserCredentials(c.Creds))
	case c.NKey != "":
		opt, err := nats.NkeyOptionFromSeed(c.NKey)
		if err != nil {
			return nil, fmt.Errorf("NATS_NKEY: %w", err)
		}
		opts = append(opts, opt)
	case c.User != "":
		opts = append(opts, nats.UserInfo(c.User, c.Password))
	}
	if c.CA != "" {
		opts = append(opts, nats.RootCAs(c.CA))
	}
	if c.Cert != "" {
		opts = append(opts, nats.ClientCert(c.Cert, c.Key))
	}
	if c.InboxPrefix != "" {
		opts = append(opts, nats.CustomInboxPrefix(c.InboxPrefix))
	}
	return opts, nil
}

// Connect connects to NATS. With RetryOnFailedConnect it returns at once
// even when no server answers yet; the connection keeps trying.
func (c Conn) Connect(name string, log zerolog.Logger) (*nats.Conn, error) {
	opts, err := c.Options(name, log)
	if err != nil {
		return nil, err
	}
	nc, err := nats.Connect(strings.TrimSpace(c.URL), opts...)
	if err != nil {
		return nil, fmt.Errorf("queue: connect to %s: %w", RedactURLs(c.URL), err)
	}
	return nc, nil
}

// RedactURLs hides any user and password embedded in comma-separated
// server URLs, for messages and logs.
func RedactURLs(urls string) string {
	parts := strings.Split(urls, ",")
	for i, p := range parts {
		u, err := url.Parse(strings.TrimSpace(p))
		if err != nil {
			parts[i] = "(unparsable URL)"
			continue
		}
		if u.User != nil {
			u.User = url.User("redacted")
		}
		parts[i] = u.String()
	}
	return strings.Join(parts, ",")
}
