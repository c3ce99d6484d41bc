package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	neturl "net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/recoverpasscode/recoverpasscode/gateway"
	"github.com/recoverpasscode/recoverpasscode/internal/testsystem"
	"github.com/recoverpasscode/recoverpasscode/service"
	"github.com/recoverpasscode/recoverpasscode/wire"
	"github.com/recoverpasscode/recoverpasscode/writeback/receiver"
)

// bannerCurl is the curl line the --dev banner prints: its API key, its
// wait, its body and its URL.
var bannerCurl = regexp.MustCompile(`(?m)^  curl -H "Authorization: Bearer (rpk_[A-Za-z0-9_-]+)" -H "Prefer: (wait=10)" -d '(\{"managedDeviceId":"[0-9a-f-]{36}"\})' (http://127\.0\.0\.1:\d+/v1/jobs)$`)

// TestDevServesTheGateway runs the real `worker --dev`, as on a fresh
// clone but on free ports, with a GATEWAY_CONFIG naming more sources, and
// sends the request of the curl line its banner prints, as curl sends it:
// one call answers 200 with the job succeeded. The file's sources are
// served too, its key of source ticketing alongside the development key,
// and the development key appears nowhere but in the banner.
func TestDevServesTheGateway(t *testing.T) {
	bin, err := workerBinary()
	if err != nil {
		t.Fatalf("build the worker: %v", err)
	}
	automationKey, automationHash, _ := gateway.NewAPIKey()
	ticketingKey, ticketingHash, _ := gateway.NewAPIKey()
	config := filepath.Join(t.TempDir(), "gateway.yaml")
	yaml := "sources:\n  automation: {apiKeys: [\"" + automationHash + "\"]}\n  ticketing: {apiKeys: [\"" + ticketingHash + "\"]}\n"
	if err := os.WriteFile(config, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	gatewayAddr := testsystem.FreeAddr(t)
	cmd := exec.Command(bin, "--dev")
	cmd.Env = append(cleanEnv(),
		"NATS_URL=nats://"+testsystem.FreeAddr(t),
		"GATEWAY_HTTP_ADDR="+gatewayAddr,
		"GATEWAY_CONFIG="+config,
		"RECOVER_HTTP_ADDR="+testsystem.FreeAddr(t),
		"RECOVER_DEV_DIR="+t.TempDir())
	logs := &testsystem.Buffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("worker --dev:\n%s", logs.String())
		}
	})

	var m []string
	if !testsystem.Eventually(30*time.Second, func() bool {
		m = bannerCurl.FindStringSubmatch(logs.String())
		return m != nil
	}) {
		t.Fatal("the banner printed no curl line to paste")
	}
	key, prefer, body, url := m[1], m[2], m[3], m[4]
	if !strings.HasSuffix(url, gatewayAddr+"/v1/jobs") || !strings.Contains(body, service.DevDevice) {
		t.Fatalf("the curl line names %s and %s, want the gateway at %s and the device %s", url, body, gatewayAddr, service.DevDevice)
	}
	// As a person would: the line is pasted once the system is up.
	testsystem.WaitReadyz(t, gatewayAddr, http.StatusOK, 20*time.Second)

	post := func(key, prefer, body string) (int, wire.Result) {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, url, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		// What curl -H … -d sends.
		req.Header.Set("Authorization", "Bearer "+key)
		req.Header.Set("Prefer", prefer)
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		var res wire.Result
		if err := json.Unmarshal(raw, &res); err != nil {
			t.Fatalf("answer %d %s: %v", resp.StatusCode, raw, err)
		}
		return resp.StatusCode, res
	}
	status, res := post(key, prefer, body)
	if status != http.StatusOK || res.Status != wire.Succeeded || res.Source != "ticketing" || res.ManagedDeviceID != service.DevDevice {
		t.Fatalf("the banner's curl: %d %+v, want 200 with the job succeeded for source ticketing", status, res)
	}
	// Its result comes back by itself: the development receiver logs it
	// verified, as the banner says.
	if !strings.Contains(logs.String(), "which logs each verified delivery") {
		t.Error("the banner does not mention the development webhook receiver")
	}
	verified := regexp.MustCompile(`"webhook_id":"` + regexp.QuoteMeta(res.JobID) + `/result"[^\n]*"webhook delivery verified"`)
	if !testsystem.Eventually(30*time.Second, func() bool { return verified.MatchString(logs.String()) }) {
		t.Errorf("the receiver logged no verified delivery of %s/result", res.JobID)
	}
	for source, k := range map[string]string{"automation": automationKey, "ticketing": ticketingKey} {
		if status, res := post(k, prefer, `{"managedDeviceId":"`+testsystem.DeviceN(7)+`"}`); status != http.StatusOK || res.Source != source {
			t.Errorf("GATEWAY_CONFIG's key of %s: %d %+v, want 200 for source %s", source, status, res, source)
		}
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	stopped = true
	if err := <-exited; err != nil {
		t.Errorf("worker --dev ended with %v", err)
	}
	if n := strings.Count(logs.String(), key); n != 1 {
		t.Errorf("the development key appears %d times in the output, want once (the banner)", n)
	}
}

// cleanEnv is this process's environment without the variables a worker
// reads, so that a test's alone configure it.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "NATS_") && !strings.HasPrefix(kv, "RECOVER_") && !strings.HasPrefix(kv, "GATEWAY_") &&
			!strings.HasPrefix(kv, "AZURE_") && !strings.HasPrefix(kv, "GRAPH_") {
			env = append(env, kv)
		}
	}
	return env
}

// startDevStack starts the --dev stack in process on a free NATS port,
// with the worker's HTTP server off, as run does, and returns the
// configuration pointed at it.
func startDevStack(t *testing.T) (*config, *service.Dev) {
	t.Helper()
	c := &config{Dev: true, DevDir: t.TempDir(), Config: service.DefaultConfig()}
	c.NATS.URL = "nats://" + testsystem.FreeAddr(t)
	c.HTTPAddr = ""
	c.LogLevel = "warn"
	dev, err := service.StartDev(&c.Config, c.DevDir, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(dev.Close)
	return c, dev
}

// TestDevGatewayAcceptsGatewayConfigsEntraApps: the Entra applications a
// GATEWAY_CONFIG names get access tokens for the --dev gateway from the
// Entra ID double, with the client secret and scope the banner prints,
// and the gateway verifies them and serves their source; the development
// key still serves ticketing.
func TestDevGatewayAcceptsGatewayConfigsEntraApps(t *testing.T) {
	const app = "77777777-7777-4777-8777-777777777777"
	c, dev := startDevStack(t)
	c.GatewayAddr = "127.0.0.1:0"
	c.GatewaySources = []gateway.Source{{Name: "automation", EntraApps: []string{app}}}
	var banner testsystem.Buffer
	stop, err := serveDevGateway(c, dev, &banner)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	testsystem.RunWorker(t, c.Config, 15*time.Second)
	m := bannerCurl.FindStringSubmatch(banner.String())
	if m == nil {
		t.Fatalf("no curl line in the banner:\n%s", banner.String())
	}
	key, url := m[1], m[4]
	testsystem.WaitReadyz(t, strings.TrimSuffix(strings.TrimPrefix(url, "http://"), "/v1/jobs"), http.StatusOK, 20*time.Second)

	e := regexp.MustCompile(`client secret (\S+)\n  and scope (\S+) at (\S+)\n`).FindStringSubmatch(banner.String())
	if e == nil {
		t.Fatalf("the banner does not say how GATEWAY_CONFIG's Entra applications get tokens:\n%s", banner.String())
	}
	form := neturl.Values{"grant_type": {"client_credentials"}, "client_id": {app}, "client_secret": {e[1]}, "scope": {e[2]}}
	resp, err := dev.Graph.Client().PostForm(e[3], form)
	if err != nil {
		t.Fatal(err)
	}
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	err = json.NewDecoder(resp.Body).Decode(&tok)
	resp.Body.Close()
	if err != nil || tok.AccessToken == "" {
		t.Fatalf("token from %s: %d %v", e[3], resp.StatusCode, err)
	}

	for source, credential := range map[string]string{"automation": tok.AccessToken, "ticketing": key} {
		req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(`{"managedDeviceId":"`+service.DevDevice+`"}`))
		req.Header.Set("Authorization", "Bearer "+credential)
		req.Header.Set("Prefer", "wait=10")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var res wire.Result
		err = json.NewDecoder(resp.Body).Decode(&res)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK || res.Source != source || res.Status != wire.Succeeded {
			t.Errorf("as %s: %d %+v (%v), want 200 succeeded", source, resp.StatusCode, res, err)
		}
	}
}

// TestDevDeliversToItsReceiver: the result of the job the banner's curl
// line submits is delivered by write-back to the development receiver,
// signed with the secret it was started with and verified, with webhook-id
// <jobId>/result.
func TestDevDeliversToItsReceiver(t *testing.T) {
	c, dev := startDevStack(t)
	c.GatewayAddr = "127.0.0.1:0"
	var banner testsystem.Buffer
	g, err := startDevGateway(&c.Config, dev, c.GatewayAddr, nil, false, &banner)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.stop)
	fmt.Fprint(&banner, g.banner())
	testsystem.RunWorker(t, c.Config, 15*time.Second)
	m := bannerCurl.FindStringSubmatch(banner.String())
	if m == nil || !strings.Contains(banner.String(), g.receiver.URL()) {
		t.Fatalf("the banner names no curl line or not the receiver:\n%s", banner.String())
	}
	key, prefer, body, url := m[1], m[2], m[3], m[4]
	testsystem.WaitReadyz(t, strings.TrimSuffix(strings.TrimPrefix(url, "http://"), "/v1/jobs"), http.StatusOK, 20*time.Second)
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Prefer", prefer)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var res wire.Result
	err = json.NewDecoder(resp.Body).Decode(&res)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || res.Status != wire.Succeeded {
		t.Fatalf("the banner's curl: %d %+v (%v), want 200 succeeded", resp.StatusCode, res, err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	want := res.JobID + "/result"
	if err := g.receiver.Wait(ctx, func(d []receiver.Delivery, _ int) bool {
		return slices.ContainsFunc(d, func(d receiver.Delivery) bool { return d.ID == want })
	}); err != nil {
		t.Fatalf("no verified delivery %s: %v (delivered %d, refused %d)", want, err, len(g.receiver.Deliveries()), g.receiver.Refused())
	}
	for _, d := range g.receiver.Deliveries() {
		if d.ID == want && (d.Result.JobID != res.JobID || d.Result.Status != wire.Succeeded || d.Result.Source != "ticketing") {
			t.Errorf("delivery %s: %+v", d.ID, d.Result)
		}
	}
	if n := g.receiver.Refused(); n != 0 {
		t.Errorf("%d deliveries refused", n)
	}
}

// TestDevWithoutGateway: an empty GATEWAY_HTTP_ADDR serves no gateway, and
// the banner says so rather than print a line that cannot work.
func TestDevWithoutGateway(t *testing.T) {
	c, dev := startDevStack(t)
	var banner testsystem.Buffer
	stop, err := serveDevGateway(c, dev, &banner)
	if err != nil {
		t.Fatal(err)
	}
	stop()
	if strings.Contains(banner.String(), "curl") || !strings.Contains(banner.String(), "GATEWAY_HTTP_ADDR is empty") {
		t.Errorf("banner:\n%s", banner.String())
	}
}

// TestDevGatewayAddressInUse: a gateway address that is taken is an error
// naming GATEWAY_HTTP_ADDR.
func TestDevGatewayAddressInUse(t *testing.T) {
	c, dev := startDevStack(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c.GatewayAddr = ln.Addr().String()
	if _, err := serveDevGateway(c, dev, io.Discard); err == nil || !strings.Contains(err.Error(), "GATEWAY_HTTP_ADDR "+c.GatewayAddr) {
		t.Fatalf("a taken address: %v", err)
	}
}

// TestDevReadsGatewayConfig: with --dev, GATEWAY_CONFIG is read and a bad
// file is an error naming it; without --dev it is not read.
func TestDevReadsGatewayConfig(t *testing.T) {
	clearWorkerEnv(t)
	_, hash, _ := gateway.NewAPIKey()
	good := filepath.Join(t.TempDir(), "good.yaml")
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(good, []byte("sources:\n  automation: {apiKeys: [\""+hash+"\"]}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, []byte("sources:\n  automation: {apiKey: [\""+hash+"\"]}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("GATEWAY_CONFIG", good)
	c, err := parseConfig([]string{"--dev"})
	if err != nil || len(c.GatewaySources) != 1 || c.GatewaySources[0].Name != "automation" || c.GatewayAddr != gateway.DefaultAddr {
		t.Fatalf("--dev with GATEWAY_CONFIG: %+v, %v", c, err)
	}
	t.Setenv("GATEWAY_CONFIG", bad)
	if _, err := parseConfig([]string{"--dev"}); err == nil || !strings.Contains(err.Error(), "GATEWAY_CONFIG "+bad) {
		t.Errorf("--dev with a bad GATEWAY_CONFIG: %v", err)
	}
	creds := []string{"--tenant-id", testsystem.Tenant, "--client-id", testsystem.Client, "--client-secret", "s"}
	if c, err := parseConfig(creds); err != nil || c.GatewaySources != nil {
		t.Errorf("without --dev, GATEWAY_CONFIG was read: %v, %v", c.GatewaySources, err)
	}
}
