package service

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/recoverpasscode/recoverpasscode/devserver"
	"github.com/recoverpasscode/recoverpasscode/graph/graphsim"
)

// The --dev stack's tenant and app registration. Fixed, so that jobs naming
// the tenant keep working across restarts.
const (
	// DevTenant is the tenant of the --dev stack: its worker's, and the
	// default of its jobs.
	DevTenant = "11111111-1111-4111-8111-111111111111"
	devClient = "22222222-2222-4222-8222-222222222222"
	// DevDevice is the managed device the --dev banner's examples name.
	// The double knows every device it is not told is missing, this one
	// included.
	DevDevice = "2d6a3d0e-8f5c-4d7a-9b1e-0b2f3c4d5e6f"
)

// Dev is what --dev starts: an embedded nats-server and a Graph and Entra
// ID double.
type Dev struct {
	NATS  *devserver.Server
	Graph *graphsim.Server
}

// Close stops the double and the server.
func (d *Dev) Close() {
	d.Graph.Close()
	d.NATS.Shutdown()
}

// DefaultDevDir is where --dev keeps its data unless told otherwise.
func DefaultDevDir() string {
	return filepath.Join(os.TempDir(), "recoverpasscode-dev")
}

// StartDev starts the dev stack, with NATS data under dir, and points cfg
// at it: the real token flow and real TLS, against the double. It prints
// what it started, and how to submit a job, to out.
func StartDev(cfg *Config, dir string, out io.Writer) (*Dev, error) {
	cfg.defaults()
	host, port, err := natsListenAddr(cfg.NATS.URL)
	if err != nil {
		return nil, err
	}
	storeDir := filepath.Join(dir, "nats")
	if err := os.MkdirAll(storeDir, 0o700); err != nil {
		return nil, fmt.Errorf("--dev-dir: %w", err)
	}
	ns, err := devserver.Start(devserver.Config{Host: host, Port: port, StoreDir: storeDir})
	if err != nil {
		return nil, fmt.Errorf("--dev: %w (is another worker --dev or nats-server using %s:%d?)", err, host, port)
	}
	gs, err := graphsim.Start(graphsim.Config{})
	if err != nil {
		ns.Shutdown()
		return nil, fmt.Errorf("--dev: graph double: %w", err)
	}
	secret := randomSecret()
	gs.AddTenant(DevTenant)
	gs.AddApp(devClient, secret)
	caFile := filepath.Join(dir, "graphsim-ca.pem")
	if err := os.WriteFile(caFile, gs.CACertPEM(), 0o644); err != nil {
		caFile = "not written: " + err.Error()
	}

	cfg.NATS.URL = ns.URL()
	cfg.GraphURL = gs.GraphURL()
	cfg.Credential.TenantID = DevTenant
	cfg.Credential.ClientID = devClient
	cfg.Credential.ClientSecret = secret
	cfg.Credential.CertificatePath = ""
	cfg.Credential.FederatedTokenFile = ""
	cfg.Credential.AuthorityHost = gs.AuthorityHost()
	cfg.Credential.GraphBaseURL = gs.GraphURL()
	cfg.Tenants = nil
	cfg.HTTPClient = gs.Client()

	fmt.Fprintf(out, `recoverpasscode worker --dev
  NATS (embedded, JetStream): %s   data in %s
  Graph double:               %s
  Entra ID double:            %s   tenant %s, app %s (CA: %s)
  Rate limit:                 %s

Submit a job from another shell:
  go run ./cmd/enqueue --device %s --wait
or with any NATS client:
  nats pub recoverpasscode.jobs.ticketing '{"managedDeviceId":"%s"}'

`, ns.URL(), storeDir, gs.GraphURL(), gs.AuthorityHost(), DevTenant, devClient, caFile, cfg.Rate, DevDevice, DevDevice)
	return &Dev{NATS: ns, Graph: gs}, nil
}

// natsListenAddr is the host and port of the first NATS_URL, where --dev
// listens.
func natsListenAddr(raw string) (string, int, error) {
	first := strings.TrimSpace(strings.Split(raw, ",")[0])
	u, err := url.Parse(first)
	if err != nil || u.Host == "" {
		return "", 0, fmt.Errorf("--dev: NATS_URL %q: want nats://host:port", first)
	}
	host, portText, err := net.SplitHostPort(u.Host)
	if err != nil {
		return u.Host, 4222, nil
	}
	port, err := strconv.Atoi(portText)
	if err != nil {
		return "", 0, fmt.Errorf("--dev: NATS_URL %q: bad port", first)
	}
	return host, port, nil
}

func randomSecret() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
