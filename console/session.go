package console

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"time"
)

// Roles are the app roles of the console's app registration that admit a
// person: readers see everything, operators also act.
const (
	RoleRead    = "Console.Read"
	RoleOperate = "Console.Operate"
)

// Cookie names. With the __Host- prefix a browser accepts the cookie only
// if it is Secure, for the whole host and no other, so a sibling subdomain
// cannot plant one.
const (
	sessionCookie = "__Host-rpc-console"
	loginCookie   = "__Host-rpc-console-login"
)

// session is who is signed in, sealed in the session cookie. The cookie
// holds no token: the ID token was verified at sign-in and is not kept.
type session struct {
	// ID is random per sign-in; the CSRF token is derived from it.
	ID       string   `json:"id"`
	Name     string   `json:"name"`
	UPN      string   `json:"upn"`
	ObjectID string   `json:"oid"`
	Roles    []string `json:"roles"`
	Expires  int64    `json:"exp"`
}

// canRead reports whether the person may see the console.
func (s *session) canRead() bool {
	return s != nil && (slices.Contains(s.Roles, RoleRead) || slices.Contains(s.Roles, RoleOperate))
}

// canOperate reports whether the person may act (replay, release, pause).
func (s *session) canOperate() bool {
	return s != nil && slices.Contains(s.Roles, RoleOperate)
}

// who names the person in audit events and held records.
func (s *session) who() string {
	if s.ObjectID == "" {
		return s.UPN
	}
	return s.UPN + " (" + s.ObjectID + ")"
}

// login is the state of a sign-in between the redirect to Entra ID and the
// callback, sealed in the login cookie.
type login struct {
	State    string `json:"state"`
	Nonce    string `json:"nonce"`
	Verifier string `json:"verifier"`
	Next     string `json:"next"`
	Expires  int64  `json:"exp"`
}

// sealer encrypts and authenticates cookie values with AES-256-GCM, the
// cookie's name bound in as additional data so that one cookie's value
// cannot stand for another's. It is safe for concurrent use.
type sealer struct {
	aead cipher.AEAD
	csrf []byte // HMAC key of the CSRF tokens
}

func newSealer(key []byte) (*sealer, error) {
	enc := sha256.Sum256(append([]byte("recoverpasscode console cookies\x00"), key...))
	mac := sha256.Sum256(append([]byte("recoverpasscode console csrf\x00"), key...))
	block, err := aes.NewCipher(enc[:])
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &sealer{aead: aead, csrf: mac[:]}, nil
}

func (s *sealer) seal(name string, v any) (string, error) {
	plain, err := json.Marshal(v)
	if err != nil {
		return "", err
	}
	nonce := make([]byte, s.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(s.aead.Seal(nonce, nonce, plain, []byte(name))), nil
}

var errBadCookie = errors.New("console: cookie is not one of ours")

func (s *sealer) open(name, value string, v any) error {
	raw, err := base64.RawURLEncoding.DecodeString(value)
	if err != nil || len(raw) < s.aead.NonceSize() {
		return errBadCookie
	}
	n := s.aead.NonceSize()
	plain, err := s.aead.Open(nil, raw[:n], raw[n:], []byte(name))
	if err != nil {
		return errBadCookie
	}
	return json.Unmarshal(plain, v)
}

// csrfToken is the token every form of the session carries: an HMAC of the
// session's id, so it needs no storage and changes at every sign-in.
func (s *sealer) csrfToken(sess *session) string {
	m := hmac.New(sha256.New, s.csrf)
	m.Write([]byte("csrf\x00" + sess.ID))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// validCSRF reports whether token is the session's, in constant time.
func (s *sealer) validCSRF(sess *session, token string) bool {
	return sess != nil && token != "" && hmac.Equal([]byte(token), []byte(s.csrfToken(sess)))
}

// cookie is a console cookie: Secure, HttpOnly, SameSite=Lax (the
// callback from Entra ID is a cross-site navigation that must carry the
// login cookie; every action is a POST, which Lax does not send cross-site,
// and carries a CSRF token besides), for the whole host.
func cookie(name, value string, expires time.Time) *http.Cookie {
	c := &http.Cookie{Name: name, Value: value, Path: "/", Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode}
	if value == "" {
		c.MaxAge = -1
	} else {
		c.Expires = expires
	}
	return c
}

// randomText is 128 bits of randomness, for ids, states and nonces.
func randomText() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
