package graph

import (
	"bytes"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/pbkdf2"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/confidential"
	"software.sslmate.com/src/go-pkcs12"
)

// maxCertificateFile bounds what is read of AZURE_CLIENT_CERTIFICATE_PATH.
const maxCertificateFile = 1 << 20

// maxPBKDF2Iterations bounds the work an encrypted key may demand.
const maxPBKDF2Iterations = 10_000_000

// loadCertificate reads a PEM or PKCS#12 file holding a certificate (chain) and its
// RSA private key, and returns the MSAL credential for it. Error text names the file
// but never the password.
func loadCertificate(path, password string) (confidential.Credential, error) {
	f, err := os.Open(path)
	if err != nil {
		return confidential.Credential{}, fmt.Errorf("AZURE_CLIENT_CERTIFICATE_PATH: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxCertificateFile))
	if err != nil {
		return confidential.Credential{}, fmt.Errorf("AZURE_CLIENT_CERTIFICATE_PATH: %w", err)
	}
	var certs []*x509.Certificate
	var key crypto.PrivateKey
	if bytes.Contains(data, []byte("-----BEGIN")) {
		certs, key, err = parsePEM(data, password)
	} else {
		certs, key, err = parsePKCS12(data, password)
	}
	if err != nil {
		return confidential.Credential{}, fmt.Errorf("AZURE_CLIENT_CERTIFICATE_PATH %s: %w", path, err)
	}
	cred, err := confidential.NewCredFromCert(certs, key)
	if err != nil {
		return confidential.Credential{}, fmt.Errorf("AZURE_CLIENT_CERTIFICATE_PATH %s: %w", path, err)
	}
	return cred, nil
}

// parsePEM reads certificates and a key with confidential.CertFromPEM, after
// decrypting an "ENCRYPTED PRIVATE KEY" (PKCS#8, PBES2) block, which CertFromPEM does
// not handle. Legacy "Proc-Type: 4,ENCRYPTED" keys are refused, as MSAL refuses them:
// their key derivation is a single MD5.
func parsePEM(data []byte, password string) ([]*x509.Certificate, crypto.PrivateKey, error) {
	var out bytes.Buffer
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		switch {
		case block.Headers["DEK-Info"] != "":
			return nil, nil, errors.New("legacy encrypted PEM keys (DEK-Info) are not supported: convert the key with `openssl pkcs8 -topk8 -v2 aes-256-cbc` or use PKCS#12")
		case block.Type == "EC PRIVATE KEY":
			return nil, nil, errors.New("the key is an EC key; Entra ID certificate credentials need RSA")
		case block.Type == "ENCRYPTED PRIVATE KEY":
			if password == "" {
				return nil, nil, errors.New("the key is encrypted: set AZURE_CLIENT_CERTIFICATE_PASSWORD")
			}
			der, err := decryptPKCS8(block.Bytes, password)
			if err != nil {
				return nil, nil, err
			}
			block = &pem.Block{Type: "PRIVATE KEY", Bytes: der}
		}
		if err := pem.Encode(&out, block); err != nil {
			return nil, nil, err
		}
	}
	certs, key, err := confidential.CertFromPEM(out.Bytes(), "")
	if err != nil {
		return nil, nil, fmt.Errorf("PEM: %w", err)
	}
	return certs, key, nil
}

// parsePKCS12 decodes a PKCS#12 file with go-pkcs12, which, unlike the frozen
// golang.org/x/crypto/pkcs12, reads the AES/PBKDF2 files that OpenSSL 3 and current
// Windows write, and keeps the chain.
func parsePKCS12(data []byte, password string) ([]*x509.Certificate, crypto.PrivateKey, error) {
	key, cert, chain, err := pkcs12.DecodeChain(data, password)
	if errors.Is(err, pkcs12.ErrIncorrectPassword) {
		return nil, nil, errors.New("PKCS#12: wrong or missing AZURE_CLIENT_CERTIFICATE_PASSWORD")
	}
	if err != nil {
		return nil, nil, fmt.Errorf("neither PEM nor readable PKCS#12: %w", err)
	}
	return append([]*x509.Certificate{cert}, chain...), key, nil
}

var (
	oidPBES2      = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 13}
	oidPBKDF2     = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 12}
	oidHMACSHA1   = asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 7}
	oidHMACSHA256 = asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 9}
	oidHMACSHA384 = asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 10}
	oidHMACSHA512 = asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 11}
	oidAES128CBC  = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 2}
	oidAES192CBC  = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 22}
	oidAES256CBC  = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 42}
)

// encryptedPrivateKeyInfo is RFC 5208's EncryptedPrivateKeyInfo.
type encryptedPrivateKeyInfo struct {
	Algorithm     pkix.AlgorithmIdentifier
	EncryptedData []byte
}

// pbes2Params is RFC 8018's PBES2-params.
type pbes2Params struct {
	KeyDerivationFunc pkix.AlgorithmIdentifier
	EncryptionScheme  pkix.AlgorithmIdentifier
}

// pbkdf2Params is RFC 8018's PBKDF2-params with an explicit salt.
type pbkdf2Params struct {
	Salt       []byte
	Iterations int
	KeyLength  int                      `asn1:"optional"`
	PRF        pkix.AlgorithmIdentifier `asn1:"optional"`
}

// decryptPKCS8 decrypts a PKCS#8 EncryptedPrivateKeyInfo using PBES2 with PBKDF2 and
// AES-CBC, the scheme of `openssl pkcs8 -topk8 -v2` and of OpenSSL 3's defaults, and
// returns the DER PrivateKeyInfo.
func decryptPKCS8(der []byte, password string) ([]byte, error) {
	var info encryptedPrivateKeyInfo
	if _, err := asn1.Unmarshal(der, &info); err != nil {
		return nil, fmt.Errorf("encrypted key: %w", err)
	}
	if !info.Algorithm.Algorithm.Equal(oidPBES2) {
		return nil, fmt.Errorf("encrypted key: scheme %s is not supported (use PBES2 with AES)", info.Algorithm.Algorithm)
	}
	var params pbes2Params
	if _, err := asn1.Unmarshal(info.Algorithm.Parameters.FullBytes, &params); err != nil {
		return nil, fmt.Errorf("encrypted key: PBES2 parameters: %w", err)
	}
	if !params.KeyDerivationFunc.Algorithm.Equal(oidPBKDF2) {
		return nil, fmt.Errorf("encrypted key: key derivation %s is not supported (use PBKDF2)", params.KeyDerivationFunc.Algorithm)
	}
	var kdf pbkdf2Params
	if _, err := asn1.Unmarshal(params.KeyDerivationFunc.Parameters.FullBytes, &kdf); err != nil {
		return nil, fmt.Errorf("encrypted key: PBKDF2 parameters: %w", err)
	}
	if kdf.Iterations < 1 || kdf.Iterations > maxPBKDF2Iterations {
		return nil, fmt.Errorf("encrypted key: %d PBKDF2 iterations is out of range", kdf.Iterations)
	}
	prf, err := pbkdf2PRF(kdf.PRF.Algorithm)
	if err != nil {
		return nil, err
	}
	keyLen, err := aesKeyLength(params.EncryptionScheme.Algorithm)
	if err != nil {
		return nil, err
	}
	var iv []byte
	if _, err := asn1.Unmarshal(params.EncryptionScheme.Parameters.FullBytes, &iv); err != nil || len(iv) != aes.BlockSize {
		return nil, errors.New("encrypted key: the AES-CBC IV is malformed")
	}
	key, err := pbkdf2.Key(prf, password, kdf.Salt, kdf.Iterations, keyLen)
	if err != nil {
		return nil, fmt.Errorf("encrypted key: %w", err)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("encrypted key: %w", err)
	}
	data := info.EncryptedData
	if len(data) == 0 || len(data)%aes.BlockSize != 0 {
		return nil, errors.New("encrypted key: the ciphertext is not whole AES blocks")
	}
	plain := make([]byte, len(data))
	cipher.NewCBCDecrypter(block, iv).CryptBlocks(plain, data)
	plain, ok := unpad(plain)
	if !ok {
		return nil, errors.New("encrypted key: wrong AZURE_CLIENT_CERTIFICATE_PASSWORD")
	}
	if _, err := x509.ParsePKCS8PrivateKey(plain); err != nil {
		return nil, errors.New("encrypted key: wrong AZURE_CLIENT_CERTIFICATE_PASSWORD")
	}
	return plain, nil
}

// pbkdf2PRF maps a PBKDF2 PRF OID to its hash; an absent PRF means HMAC-SHA1.
func pbkdf2PRF(oid asn1.ObjectIdentifier) (func() hash.Hash, error) {
	switch {
	case len(oid) == 0, oid.Equal(oidHMACSHA1):
		return sha1.New, nil
	case oid.Equal(oidHMACSHA256):
		return sha256.New, nil
	case oid.Equal(oidHMACSHA384):
		return sha512.New384, nil
	case oid.Equal(oidHMACSHA512):
		return sha512.New, nil
	}
	return nil, fmt.Errorf("encrypted key: PBKDF2 PRF %s is not supported", oid)
}

// aesKeyLength maps an AES-CBC OID to its key length.
func aesKeyLength(oid asn1.ObjectIdentifier) (int, error) {
	switch {
	case oid.Equal(oidAES128CBC):
		return 16, nil
	case oid.Equal(oidAES192CBC):
		return 24, nil
	case oid.Equal(oidAES256CBC):
		return 32, nil
	}
	return 0, fmt.Errorf("encrypted key: cipher %s is not supported (use AES-CBC)", oid)
}

// unpad strips PKCS#7 padding.
func unpad(b []byte) ([]byte, bool) {
	n := int(b[len(b)-1])
	if n == 0 || n > aes.BlockSize || n > len(b) {
		return nil, false
	}
	for _, c := range b[len(b)-n:] {
		if int(c) != n {
			return nil, false
		}
	}
	return b[:len(b)-n], true
}
