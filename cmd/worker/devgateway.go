package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/recoverpasscode/recoverpasscode/gateway"
	"github.com/recoverpasscode/recoverpasscode/graph/graphsim"
	"github.com/recoverpasscode/recoverpasscode/history"
	"github.com/recoverpasscode/recoverpasscode/queue"
	"github.com/recoverpasscode/recoverpasscode/service"
	"github.com/recoverpasscode/recoverpasscode/wire"
	"github.com/recoverpasscode/recoverpasscode/writeback"
	"github.com/recoverpasscode/recoverpasscode/writeback/receiver"
)

// The --dev gateway's API registration in the Entra ID double, whose
// access tokens it accepts from the Entra applications GATEWAY_CONFIG
// names.
const (
	devGatewayAPI    = "66666666-6666-4666-8666-666666666666"
	devGatewayAPIURI = "api://recoverpasscode-dev-gateway"
	// devSource is the source the development API key names.
	devSource = "ticketing"
	// devGatewayStop bounds the requests in flight when --dev stops.
	devGatewayStop = 5 * time.Second
	// devReceiverName names the development receiver's endpoint, the same
	// at every start (its URL's port is not), so that its durable
	// consumer is reused.
	devReceiverName = "dev-receiver"
)

// devGateway is the HTTP gateway --dev serves in process, in front of the
// dev stack, on its own NATS connection as cmd/gateway would, with the
// write-back cmd/gateway runs: every result of source ticketing goes, signed,
// to a development webhook receiver that logs each verified delivery. It
// lives here rather than in package service, which the gateway's tests
// import.
type devGateway struct {
	// url is its base URL, key the development API key of source
	// ticketing.
	url, key string
	sources  []string
	// appSecret is the client secret the double gives GATEWAY_CONFIG's
	// Entra applications; empty when it names none.
	appSecret string
	authority string
	// receiver is the development webhook receiver of source ticketing.
	receiver *receiver.Server
	nc       *nats.Conn
	cancel   context.CancelFunc
	done     chan error
	wbDone   chan error
}

// serveDevGateway serves the gateway of --dev on cfg.GatewayAddr, unless it
// is empty, and adds to the banner on out how to use it; stop stops it.
func serveDevGateway(cfg *config, dev *service.Dev, out io.Writer) (stop func(), err error) {
	if cfg.GatewayAddr == "" {
		fmt.Fprint(out, "HTTP gateway: off (GATEWAY_HTTP_ADDR is empty)\n\n")
		return func() {}, nil
	}
	g, err := startDevGateway(&cfg.Config, dev, cfg.GatewayAddr, cfg.GatewaySources, cfg.ConsoleReadOnly, out)
	if err != nil {
		return nil, err
	}
	fmt.Fprint(out, g.banner())
	return g.stop, nil
}

// startDevGateway serves the gateway on addr in front of dev, with a new
// development API key for source ticketing added to sources (those of
// GATEWAY_CONFIG). cfg is the worker's, pointed at dev by StartDev; the
// gateway logs to out as the worker does.
func startDevGateway(cfg *service.Config, dev *service.Dev, addr string, sources []gateway.Source, readOnly bool, out io.Writer) (*devGateway, error) {
	key, hash, err := gateway.NewAPIKey()
	if err != nil {
		return nil, err
	}
	log := service.NewLogger(cfg.LogFormat, cfg.LogLevel, out).With().Str("component", "gateway").Logger()
	secret, err := writeback.NewSecret()
	if err != nil {
		return nil, err
	}
	recvLog := log.With().Str("component", "receiver").Logger()
	recv, err := receiver.Start(receiver.Config{Secrets: []string{secret}, Logger: &recvLog}, "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("--dev: %w", err)
	}
	devHook := writeback.Webhook{Name: devReceiverName, URL: recv.URL(), Secret: secret}
	sources, err = gateway.MergeSources([]gateway.Source{{Name: devSource, APIKeys: []string{hash}, Webhooks: []writeback.Webhook{devHook}}}, sources)
	if err != nil {
		_ = recv.Close()
		return nil, fmt.Errorf("--dev: GATEWAY_CONFIG: %w", err)
	}
	gs := dev.Graph
	g := &devGateway{key: key, authority: gs.AuthorityHost(), receiver: recv, done: make(chan error, 1), wbDone: make(chan error, 1)}
	gs.AddAPI(graphsim.API{AppID: devGatewayAPI, IdentifierURI: devGatewayAPIURI})
	for _, s := range sources {
		g.sources = append(g.sources, s.Name)
		for _, app := range s.EntraApps {
			if g.appSecret == "" {
				g.appSecret = rand.Text()
			}
			gs.AddApp(app, g.appSecret)
			gs.AssignAppRole(app, devGatewayAPI, gateway.DefaultRole)
		}
	}

	natsURL := dev.NATS.URL()
	opts, err := queue.Conn{URL: natsURL}.Options("recoverpasscode dev gateway", log)
	if err != nil {
		_ = recv.Close()
		return nil, err
	}
	// As cmd/gateway: nothing is buffered while disconnected, so that a
	// job the caller was told 503 about is never sent later.
	nc, err := nats.Connect(natsURL, append(opts, nats.ReconnectBufSize(-1))...)
	if err != nil {
		_ = recv.Close()
		return nil, fmt.Errorf("--dev: gateway: connect to NATS: %w", err)
	}
	fail := func(err error) (*devGateway, error) {
		nc.Close()
		_ = recv.Close()
		return nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return fail(err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	wb, err := writeback.New(js, writeback.Config{
		Names:      wire.Names{Prefix: cfg.Prefix},
		Sources:    gateway.WriteBacks(sources),
		Registerer: reg,
		Logger:     log,
	})
	if err != nil {
		return fail(fmt.Errorf("--dev: GATEWAY_CONFIG: %w", err))
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		_, err = fail(fmt.Errorf("--dev: GATEWAY_HTTP_ADDR %s: %w (set GATEWAY_HTTP_ADDR to a free address, or to the empty string for no gateway)", addr, err))
		return nil, err
	}
	g.nc, g.url = nc, "http://"+reachable(ln.Addr())
	con, err := devConsole(gs, js, cfg.Prefix, g.url, readOnly, history.New(js, wire.Names{Prefix: cfg.Prefix}), &log)
	if err != nil {
		_ = ln.Close()
		return fail(fmt.Errorf("--dev: console: %w", err))
	}
	gw, err := gateway.New(gateway.Config{
		NATS:          nc,
		Prefix:        cfg.Prefix,
		TenantID:      service.DevTenant,
		Sources:       sources,
		Audiences:     []string{devGatewayAPI},
		AuthorityHost: gs.AuthorityHost(),
		HTTPClient:    gs.Client(),
		Registry:      reg,
		Log:           &log,
		Console:       con,
		Ready: func() error {
			select {
			case <-wb.Started():
				return nil
			default:
				return errors.New("write-back: the delivery consumers are not set up yet")
			}
		},
	})
	if err != nil {
		_ = ln.Close()
		return fail(fmt.Errorf("--dev: %w", err))
	}
	g.serve(gw, wb, ln)
	return g, nil
}

// serve runs the gateway on ln, and write-back, until stop.
func (g *devGateway) serve(gw *gateway.Server, wb *writeback.Deliverer, ln net.Listener) {
	ctx, cancel := context.WithCancel(context.Background())
	hard, cancelHard := context.WithCancel(context.Background())
	g.cancel = func() {
		cancel()
		time.AfterFunc(devGatewayStop, cancelHard)
	}
	go func() {
		defer cancelHard()
		g.done <- gw.Serve(ctx, hard, ln)
	}()
	go func() { g.wbDone <- wb.Run(ctx) }()
}

// stop stops serving and delivering, lets requests in flight finish for a
// few seconds, and closes the gateway's connection and the receiver.
func (g *devGateway) stop() {
	g.cancel()
	<-g.done
	<-g.wbDone
	g.nc.Close()
	_ = g.receiver.Close()
}

// reachable is addr as a client on this machine dials it: an unspecified
// host (0.0.0.0, ::) is reached on loopback.
func reachable(addr net.Addr) string {
	host, port, err := net.SplitHostPort(addr.String())
	if err != nil {
		return addr.String()
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

// banner tells how to submit a job over HTTP: a line to paste, after the
// banner of the dev stack.
func (g *devGateway) banner() string {
	var b strings.Builder
	fmt.Fprintf(&b, "HTTP gateway: %s   sources %s\n", g.url, strings.Join(g.sources, ", "))
	fmt.Fprintf(&b, "Console: open %s and sign in with one click as %s (operator) or %s (reader)\n", g.url, devConsoleOperator, devConsoleReader)
	fmt.Fprintf(&b, "  Device %s is unknown to Intune at its first call (404): to see a dead letter and replay it there,\n", devLateDevice)
	fmt.Fprintf(&b, "  go run ./cmd/enqueue --device %s --wait\n", devLateDevice)
	fmt.Fprintf(&b, "Submit a job over HTTP, as a ticketing system does, as source %s (the API key is new at every start):\n", devSource)
	fmt.Fprintf(&b, "  %s\n", devCurl(g.url, g.key, service.DevDevice))
	fmt.Fprintf(&b, "Write-back: every result of source %s is delivered, signed, to the development webhook receiver at %s,\n", devSource, g.receiver.URL())
	fmt.Fprintf(&b, "  which logs each verified delivery (\"webhook delivery verified\", with its webhook_id <jobId>/result)\n")
	if g.appSecret != "" {
		fmt.Fprintf(&b, "GATEWAY_CONFIG's Entra applications get access tokens from the Entra ID double with client secret %s\n", g.appSecret)
		fmt.Fprintf(&b, "  and scope %s/.default at %s/%s/oauth2/v2.0/token\n", devGatewayAPIURI, g.authority, service.DevTenant)
	}
	return b.String() + "\n"
}

// devCurl is the curl command line that submits a job for device through
// the gateway at base with an API key and waits up to 10 s for its result.
func devCurl(base, key, device string) string {
	return fmt.Sprintf(`curl -H "Authorization: Bearer %s" -H "Prefer: wait=10" -d '{"managedDeviceId":"%s"}' %s/v1/jobs`, key, device, base)
}
