package queue

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
	"github.com/rs/zerolog"
)

func startServer(t *testing.T, opts *server.Options) string {
	t.Helper()
	opts.Host, opts.Port, opts.NoLog, opts.NoSigs = "127.0.0.1", -1, true, true
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready")
	}
	t.Cleanup(s.Shutdown)
	return s.ClientURL()
}

// connect connects with c, without retrying a failed first connect, and
// reports whether the server let it in.
func connect(t *testing.T, c Conn) error {
	t.Helper()
	opts, err := c.Options("test", zerolog.Nop())
	if err != nil {
		return err
	}
	o := nats.GetDefaultOptions()
	for _, opt := range append(opts, nats.RetryOnFailedConnect(false), nats.MaxReconnects(0)) {
		if err := opt(&o); err != nil {
			return err
		}
	}
	o.Url = c.URL
	nc, err := o.Connect()
	if err != nil {
		return err
	}
	defer nc.Close()
	return nc.Flush()
}

func TestUserAndPassword(t *testing.T) {
	url := startServer(t, &server.Options{Users: []*server.User{{Username: "worker", Password: "s3cret"}}})
	if err := connect(t, Conn{URL: url, User: "worker", Password: "s3cret"}); err != nil {
		t.Fatalf("right password refused: %v", err)
	}
	err := connect(t, Conn{URL: url, User: "worker", Password: "wrong"})
	if err == nil {
		t.Fatal("wrong password accepted")
	}
	if strings.Contains(err.Error(), "wrong") {
		t.Fatalf("the error repeats the password: %v", err)
	}
}

func TestNKeySeedFile(t *testing.T) {
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	seed, _ := kp.Seed()
	seedFile := filepath.Join(t.TempDir(), "worker.nk")
	if err := os.WriteFile(seedFile, seed, 0o600); err != nil {
		t.Fatal(err)
	}
	url := startServer(t, &server.Options{Nkeys: []*server.NkeyUser{{Nkey: pub}}})
	if err := connect(t, Conn{URL: url, NKey: seedFile}); err != nil {
		t.Fatalf("nkey refused: %v", err)
	}
	if err := connect(t, Conn{URL: url}); err == nil {
		t.Fatal("a client without the nkey was accepted")
	}
}

func TestMutualTLS(t *testing.T) {
	dir := t.TempDir()
	ca, caKey := newCert(t, nil, nil, "test CA", true)
	srv, srvKey := newCert(t, ca, caKey, "127.0.0.1", false)
	cli, cliKey := newCert(t, ca, caKey, "worker", false)
	files := map[string][]byte{
		"ca.pem":  pemCert(ca),
		"cli.pem": pemCert(cli),
		"cli.key": pemKey(t, cliKey),
		"srv.pem": pemCert(srv),
		"srv.key": pemKey(t, srvKey),
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, "srv.pem"), filepath.Join(dir, "srv.key"))
	if err != nil {
		t.Fatal(err)
	}
	url := startServer(t, &server.Options{
		TLS: true, TLSVerify: true,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{pair}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12},
	})
	url = strings.Replace(url, "nats://", "tls://", 1)
	ok := Conn{URL: url, CA: filepath.Join(dir, "ca.pem"), Cert: filepath.Join(dir, "cli.pem"), Key: filepath.Join(dir, "cli.key")}
	if err := connect(t, ok); err != nil {
		t.Fatalf("mutual TLS refused: %v", err)
	}
	if err := connect(t, Conn{URL: url, CA: filepath.Join(dir, "ca.pem")}); err == nil {
		t.Fatal("a client without a certificate was accepted")
	}
}

func TestValidateRejectsMixedAuthentication(t *testing.T) {
	for _, c := range []Conn{
		{User: "u", NKey: "seed"},
		{Password: "p"},
		{Cert: "c"},
	} {
		if err := c.Validate(); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
}

func newCert(t *testing.T, parent *x509.Certificate, parentKey *ecdsa.PrivateKey, name string, isCA bool) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IsCA:                  isCA,
		BasicConstraintsValid: true,
	}
	if ip := net.ParseIP(name); ip != nil {
		tmpl.IPAddresses = []net.IP{ip}
	}
	signer, signerKey := tmpl, key
	if parent != nil {
		signer, signerKey = parent, parentKey
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &key.PublicKey, signerKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}

func pemCert(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

func pemKey(t *testing.T, k *ecdsa.PrivateKey) []byte {
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})
}

func TestConnectErrorHidesCredentialsInTheURL(t *testing.T) {
	got := RedactURLs("nats://worker:hunter2@nats-1:4222, nats://nats-2:4222")
	if strings.Contains(got, "hunter2") || !strings.Contains(got, "nats-2:4222") {
		t.Fatalf("RedactURLs = %q", got)
	}
}
