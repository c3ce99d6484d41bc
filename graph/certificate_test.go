package graph_test

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"software.sslmate.com/src/go-pkcs12"
)

func pemCert(cert *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})
}

func pkcs8(t *testing.T, key any) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func pemCertAndKey(t *testing.T, cert *x509.Certificate, key *rsa.PrivateKey) []byte {
	return append(pemCert(cert), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8(t, key)})...)
}

func pemECKey(t *testing.T) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})
}

// pemCertAndEncryptedKey writes the key as "ENCRYPTED PRIVATE KEY" with PBES2,
// PBKDF2-HMAC-SHA256 and AES-256-CBC, as `openssl pkcs8 -topk8 -v2 aes-256-cbc` does.
func pemCertAndEncryptedKey(t *testing.T, cert *x509.Certificate, key *rsa.PrivateKey, password string) []byte {
	t.Helper()
	salt, iv := make([]byte, 16), make([]byte, aes.BlockSize)
	_, _ = rand.Read(salt)
	_, _ = rand.Read(iv)
	const iterations = 2048
	dk, err := pbkdf2.Key(sha256.New, password, salt, iterations, 32)
	if err != nil {
		t.Fatal(err)
	}
	plain := pkcs8(t, key)
	pad := aes.BlockSize - len(plain)%aes.BlockSize
	plain = append(plain, bytes.Repeat([]byte{byte(pad)}, pad)...)
	block, _ := aes.NewCipher(dk)
	cipher.NewCBCEncrypter(block, iv).CryptBlocks(plain, plain)

	type prf struct {
		Algorithm  asn1.ObjectIdentifier
		Parameters asn1.RawValue
	}
	kdfParams := mustMarshal(t, struct {
		Salt       []byte
		Iterations int
		PRF        prf
	}{salt, iterations, prf{asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 9}, asn1.NullRawValue}})
	pbes2 := mustMarshal(t, struct {
		KDF pkix.AlgorithmIdentifier
		Enc pkix.AlgorithmIdentifier
	}{
		pkix.AlgorithmIdentifier{Algorithm: asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 12}, Parameters: asn1.RawValue{FullBytes: kdfParams}},
		pkix.AlgorithmIdentifier{Algorithm: asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 42}, Parameters: asn1.RawValue{FullBytes: mustMarshal(t, iv)}},
	})
	der := mustMarshal(t, struct {
		Algorithm pkix.AlgorithmIdentifier
		Data      []byte
	}{pkix.AlgorithmIdentifier{Algorithm: asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 13}, Parameters: asn1.RawValue{FullBytes: pbes2}}, plain})
	return append(pemCert(cert), pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: der})...)
}

func mustMarshal(t *testing.T, v any) []byte {
	t.Helper()
	b, err := asn1.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// opensslEncryptedPEM has the openssl command, when installed, encrypt the key, as a
// cross-check of the Go encoder above; nil when openssl is not there.
func opensslEncryptedPEM(t *testing.T, cert *x509.Certificate, key *rsa.PrivateKey, password string) []byte {
	t.Helper()
	bin, err := exec.LookPath("openssl")
	if err != nil {
		t.Log("openssl not installed: skipping its encrypted PEM")
		return nil
	}
	in := filepath.Join(t.TempDir(), "key.pem")
	if err := os.WriteFile(in, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8(t, key)}), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "pkcs8", "-topk8", "-v2", "aes-256-cbc", "-in", in, "-passout", "pass:"+password).Output()
	if err != nil {
		t.Fatalf("openssl pkcs8: %v", err)
	}
	return append(pemCert(cert), out...)
}

// encodePKCS12 writes a .pfx: modern (PBES2, AES-256, as OpenSSL 3 writes) or legacy
// (3DES, as older Windows writes).
func encodePKCS12(t *testing.T, cert *x509.Certificate, key *rsa.PrivateKey, password string, legacy bool) []byte {
	t.Helper()
	enc := pkcs12.Modern
	if legacy {
		enc = pkcs12.LegacyDES
	}
	pfx, err := enc.Encode(key, cert, nil, password)
	if err != nil {
		t.Fatal(err)
	}
	return pfx
}
