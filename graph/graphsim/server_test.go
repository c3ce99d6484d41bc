package graphsim_test

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/recoverpasscode/recoverpasscode/graph/graphsim"
)

// TestCACertPEM shows a client that trusts only the PEM (as SSL_CERT_FILE
// makes a --dev worker do) reaching both services, by IP and by localhost.
func TestCACertPEM(t *testing.T) {
	s := newServer(t, graphsim.Config{})
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(s.CACertPEM()) {
		t.Fatal("CACertPEM holds no certificate")
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	defer client.CloseIdleConnections()
	authority := s.AuthorityHost() + "/" + tenantID + "/v2.0/.well-known/openid-configuration"
	for _, u := range []string{authority, strings.Replace(authority, "127.0.0.1", "localhost", 1)} {
		resp, err := client.Get(u)
		if err != nil {
			t.Fatalf("GET %s: %v", u, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s: %d", u, resp.StatusCode)
		}
	}
	resp, err := client.Post(s.GraphURL()+managedDevicePath(deviceID), "", nil)
	if err != nil {
		t.Fatalf("POST to Graph: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("Graph without a token: %d, want 401", resp.StatusCode)
	}
	if _, err := http.Get(s.GraphURL()); err == nil {
		t.Error("a client without the CA trusted the server")
	}
}

// TestStartAddressInUse shows Start reporting a listener it cannot open.
func TestStartAddressInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	s, err := graphsim.Start(graphsim.Config{GraphAddr: ln.Addr().String()})
	if err == nil {
		s.Close()
		t.Fatal("Start on a port in use succeeded")
	}
	s, err = graphsim.Start(graphsim.Config{AuthorityAddr: ln.Addr().String()})
	if err == nil {
		s.Close()
		t.Fatal("Start on a port in use succeeded")
	}
}
