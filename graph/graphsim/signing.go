package graphsim

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"net/http"
	"sync"
)

// signingKeys are the RSA keys that sign access tokens: every key is
// published in the JWKS, the newest signs. Keys are made on first use (by
// AddAPI, or a JWKS request), as a 2048-bit RSA key takes a while and most
// tests never need one. It has its own lock, taken after Server.mu when
// both are held.
type signingKeys struct {
	mu       sync.Mutex
	keys     []*signingKey // oldest first; the last one signs
	requests int           // JWKS requests served
}

type signingKey struct {
	kid string
	key *rsa.PrivateKey
}

func newSigningKey() (*signingKey, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("graphsim: make a signing key: %w", err)
	}
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("graphsim: make a signing key: %w", err)
	}
	sum := sha256.Sum256(der)
	// Entra ID's key ids are base64url thumbprints of the key's certificate.
	return &signingKey{kid: base64.RawURLEncoding.EncodeToString(sum[:20]), key: key}, nil
}

// currentLocked returns the signing key, making the first one if needed.
func (k *signingKeys) currentLocked() (*signingKey, error) {
	if len(k.keys) == 0 {
		key, err := newSigningKey()
		if err != nil {
			return nil, err
		}
		k.keys = append(k.keys, key)
	}
	return k.keys[len(k.keys)-1], nil
}

// ensure makes the first key if there is none.
func (k *signingKeys) ensure() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	_, err := k.currentLocked()
	return err
}

// sign returns claims as an RS256 JWT with the current key's kid.
func (k *signingKeys) sign(claims map[string]any) (string, error) {
	k.mu.Lock()
	key, err := k.currentLocked()
	k.mu.Unlock()
	if err != nil {
		return "", err
	}
	header, err := json.Marshal(map[string]string{"typ": "JWT", "alg": "RS256", "kid": key.kid})
	if err != nil {
		return "", err
	}
	body, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	signed := base64.RawURLEncoding.EncodeToString(header) + "." + base64.RawURLEncoding.EncodeToString(body)
	digest := sha256.Sum256([]byte(signed))
	sig, err := rsa.SignPKCS1v15(rand.Reader, key.key, crypto.SHA256, digest[:])
	if err != nil {
		return "", fmt.Errorf("graphsim: sign token: %w", err)
	}
	return signed + "." + base64.RawURLEncoding.EncodeToString(sig), nil
}

// jwk is one published key, in the members Entra ID's JWKS carries that a
// verifier needs.
type jwk struct {
	Kty string `json:"kty"`
	Use string `json:"use"`
	Kid string `json:"kid"`
	N   string `json:"n"`
	E   string `json:"e"`
}

// document returns the JWKS of every key, counting the request.
func (k *signingKeys) document() (map[string][]jwk, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.requests++
	if _, err := k.currentLocked(); err != nil {
		return nil, err
	}
	out := make([]jwk, 0, len(k.keys))
	for _, key := range k.keys {
		pub := key.key.PublicKey
		out = append(out, jwk{
			Kty: "RSA", Use: "sig", Kid: key.kid,
			N: base64.RawURLEncoding.EncodeToString(pub.N.Bytes()),
			E: base64.RawURLEncoding.EncodeToString(big.NewInt(int64(pub.E)).Bytes()),
		})
	}
	return map[string][]jwk{"keys": out}, nil
}

// RotateSigningKey makes a new signing key, which signs every access token
// from now on, and returns its kid. The keys before it stay published, as
// Entra ID keeps a retired key in its JWKS for a while, until
// RetireSigningKeys.
func (s *Server) RotateSigningKey() (string, error) {
	key, err := newSigningKey()
	if err != nil {
		return "", err
	}
	s.signing.mu.Lock()
	defer s.signing.mu.Unlock()
	s.signing.keys = append(s.signing.keys, key)
	return key.kid, nil
}

// RetireSigningKeys stops publishing every key but the current one.
func (s *Server) RetireSigningKeys() {
	s.signing.mu.Lock()
	defer s.signing.mu.Unlock()
	if n := len(s.signing.keys); n > 1 {
		s.signing.keys = s.signing.keys[n-1:]
	}
}

// JWKSRequests is the number of times the JWKS was fetched, so that a test
// can tell a verifier that caches the keys from one that fetches them for
// every token.
func (s *Server) JWKSRequests() int {
	s.signing.mu.Lock()
	defer s.signing.mu.Unlock()
	return s.signing.requests
}

// serveJWKS answers the tenant's discovery/v2.0/keys.
func (s *Server) serveJWKS(w http.ResponseWriter, r *http.Request, tenant string) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		s.writeOAuthError(w, r, &oauthError{http.StatusMethodNotAllowed, "invalid_request", 900561, "The endpoint only accepts GET requests."})
		return
	}
	s.mu.Lock()
	known := s.dir.tenants[tenant]
	s.mu.Unlock()
	if !known {
		s.writeOAuthError(w, r, errTenantNotFound(tenant))
		return
	}
	doc, err := s.signing.document()
	if err != nil {
		s.writeOAuthError(w, r, &oauthError{http.StatusInternalServerError, "server_error", 50000, "The keys could not be made."})
		return
	}
	writeJSON(w, http.StatusOK, doc)
}
