package graphsim

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha1" //nolint:gosec // x5t is a SHA-1 thumbprint by definition (RFC 7515).
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"net/http"
	"strings"
	"time"
)

// assertionSkew is the clock skew Entra ID tolerates on nbf and exp.
const assertionSkew = 5 * time.Minute

type assertionHeader struct {
	Alg     string `json:"alg"`
	X5tS256 string `json:"x5t#S256"`
	X5t     string `json:"x5t"`
}

type assertionClaims struct {
	Aud audience    `json:"aud"`
	Iss string      `json:"iss"`
	Sub string      `json:"sub"`
	Exp json.Number `json:"exp"`
	Nbf json.Number `json:"nbf"`
}

// audience is a JWT aud claim, which may be a string or a list of strings.
type audience []string

func (a *audience) UnmarshalJSON(b []byte) error {
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		*a = audience{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return fmt.Errorf("graphsim: aud is neither a string nor a list of strings: %w", err)
	}
	*a = many
	return nil
}

func errMalformedAssertion(why string) *oauthError {
	return &oauthError{http.StatusBadRequest, "invalid_request", 50027, "JWT token is invalid or malformed. " + why}
}

// verifyClientAssertion checks a certificate-signed client assertion the way
// Entra ID does: a compact JWS signed (PS256, RS256 or ES256) by one of the
// app's certificates (chosen by the x5t#S256 or x5t thumbprint when the
// header has one), with iss and sub naming the app, aud naming the tenant's
// token endpoint, and now within nbf and exp.
func verifyClientAssertion(assertion, clientID string, audiences []string, certs map[[sha256.Size]byte]*x509.Certificate, now time.Time) *oauthError {
	parts := strings.Split(assertion, ".")
	if len(parts) != 3 {
		return errMalformedAssertion("It does not have three parts.")
	}
	var h assertionHeader
	if err := decodeSegment(parts[0], &h); err != nil {
		return errMalformedAssertion("Its header does not decode.")
	}
	var c assertionClaims
	if err := decodeSegment(parts[1], &c); err != nil {
		return errMalformedAssertion("Its claims do not decode.")
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return errMalformedAssertion("Its signature does not decode.")
	}

	candidates, oerr := candidateCerts(h, certs)
	if oerr != nil {
		return oerr
	}
	signed := []byte(parts[0] + "." + parts[1])
	verified := false
	for _, cert := range candidates {
		ok, oerr := verifySignature(h.Alg, cert.PublicKey, signed, sig)
		if oerr != nil {
			return oerr
		}
		if ok {
			verified = true
			break
		}
	}
	if !verified {
		return &oauthError{http.StatusUnauthorized, "invalid_client", 700027, "Client assertion contains an invalid signature."}
	}

	if !strings.EqualFold(c.Iss, clientID) || !strings.EqualFold(c.Sub, clientID) {
		return &oauthError{http.StatusUnauthorized, "invalid_client", 700021, "Client assertion application identifier doesn't match 'client_id' parameter."}
	}
	if !audienceMatches(c.Aud, audiences) {
		return &oauthError{http.StatusUnauthorized, "invalid_client", 700212, "The audience of the client assertion is not the token endpoint of this tenant."}
	}
	return checkAssertionTimes(c, now)
}

func decodeSegment(seg string, v any) error {
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		return fmt.Errorf("graphsim: decode JWT segment: %w", err)
	}
	d := json.NewDecoder(strings.NewReader(string(b)))
	d.UseNumber()
	if err := d.Decode(v); err != nil {
		return fmt.Errorf("graphsim: decode JWT segment: %w", err)
	}
	return nil
}

// candidateCerts picks the registered certificates a header's thumbprint
// names, or all of them when the header names none.
func candidateCerts(h assertionHeader, certs map[[sha256.Size]byte]*x509.Certificate) ([]*x509.Certificate, *oauthError) {
	var out []*x509.Certificate
	switch {
	case h.X5tS256 != "":
		want, err := decodeThumbprint(h.X5tS256)
		if err != nil {
			return nil, errMalformedAssertion("Its x5t#S256 header does not decode.")
		}
		for sum, cert := range certs {
			if string(sum[:]) == string(want) {
				out = append(out, cert)
			}
		}
	case h.X5t != "":
		want, err := decodeThumbprint(h.X5t)
		if err != nil {
			return nil, errMalformedAssertion("Its x5t header does not decode.")
		}
		for _, cert := range certs {
			sum := sha1.Sum(cert.Raw) //nolint:gosec // See the import.
			if string(sum[:]) == string(want) {
				out = append(out, cert)
			}
		}
	default:
		for _, cert := range certs {
			out = append(out, cert)
		}
	}
	if len(out) == 0 {
		return nil, &oauthError{http.StatusUnauthorized, "invalid_client", 700027,
			"The certificate with identifier used to sign the client assertion is not registered on application. [Reason - The key was not found.]"}
	}
	return out, nil
}

// decodeThumbprint accepts the standard base64 MSAL writes and the base64url
// RFC 7515 specifies.
func decodeThumbprint(s string) ([]byte, error) {
	if b, err := base64.StdEncoding.DecodeString(s); err == nil {
		return b, nil
	}
	return base64.RawURLEncoding.DecodeString(s)
}

// verifySignature reports whether sig signs signed under pub with alg. An
// algorithm Entra ID does not accept for client assertions is an error.
func verifySignature(alg string, pub any, signed, sig []byte) (bool, *oauthError) {
	digest := sha256.Sum256(signed)
	switch alg {
	case "PS256":
		k, ok := pub.(*rsa.PublicKey)
		return ok && rsa.VerifyPSS(k, crypto.SHA256, digest[:], sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthAuto}) == nil, nil
	case "RS256":
		k, ok := pub.(*rsa.PublicKey)
		return ok && rsa.VerifyPKCS1v15(k, crypto.SHA256, digest[:], sig) == nil, nil
	case "ES256":
		k, ok := pub.(*ecdsa.PublicKey)
		if !ok || len(sig) != 64 {
			return false, nil
		}
		r, s := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
		return ecdsa.Verify(k, digest[:], r, s), nil
	default:
		return false, errMalformedAssertion(fmt.Sprintf("The signing algorithm '%s' is not supported.", alg))
	}
}

func audienceMatches(got audience, want []string) bool {
	for _, g := range got {
		for _, w := range want {
			if strings.EqualFold(strings.TrimSuffix(g, "/"), strings.TrimSuffix(w, "/")) {
				return true
			}
		}
	}
	return false
}

func checkAssertionTimes(c assertionClaims, now time.Time) *oauthError {
	exp, err := c.Exp.Int64()
	if err != nil {
		return errMalformedAssertion("Its exp claim is missing or not a number.")
	}
	nbf := now.Unix()
	if c.Nbf != "" {
		if nbf, err = c.Nbf.Int64(); err != nil {
			return errMalformedAssertion("Its nbf claim is not a number.")
		}
	}
	if now.After(time.Unix(exp, 0).Add(assertionSkew)) || now.Add(assertionSkew).Before(time.Unix(nbf, 0)) {
		return &oauthError{http.StatusUnauthorized, "invalid_client", 700024,
			fmt.Sprintf("Client assertion is not within its valid time range. Current time: %s, assertion valid from %s, expiry time of assertion %s.",
				now.UTC().Format(time.RFC3339), time.Unix(nbf, 0).UTC().Format(time.RFC3339), time.Unix(exp, 0).UTC().Format(time.RFC3339))}
	}
	return nil
}
