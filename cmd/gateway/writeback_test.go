package main

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/recoverpasscode/recoverpasscode/devserver/devservertest"
	"github.com/recoverpasscode/recoverpasscode/gateway"
	"github.com/recoverpasscode/recoverpasscode/graph/graphsim"
	"github.com/recoverpasscode/recoverpasscode/internal/testsystem"
	"github.com/recoverpasscode/recoverpasscode/queue"
	"github.com/recoverpasscode/recoverpasscode/wire"
	"github.com/recoverpasscode/recoverpasscode/writeback"
	"github.com/recoverpasscode/recoverpasscode/writeback/receiver"
	"github.com/recoverpasscode/recoverpasscode/writeback/servicenowsim"
)

// TestReadyWaitsForWriteBack: /readyz is not ready while write-back has
// not set up its consumers (here: the deliveries bucket does not exist
// yet), and is once it has.
func TestReadyWaitsForWriteBack(t *testing.T) {
	ns := devservertest.Start(t)
	nc, err := nats.Connect(ns.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	secret, _ := writeback.NewSecret()
	g := gateway.Config{Sources: []gateway.Source{{Name: "ticketing", APIKeys: []string{gateway.HashAPIKey("k")},
		Webhooks: []writeback.Webhook{{URL: "http://127.0.0.1:1/hook", Secret: secret}}}}}
	wb, err := writeback.New(js, writeBackConfig(g, prometheus.NewRegistry(), zerolog.Nop()))
	if err != nil {
		t.Fatal(err)
	}
	if len(wb.Endpoints()) != 1 {
		t.Fatalf("endpoints %+v", wb.Endpoints())
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- wb.Run(ctx) }()
	if err := writeBackReady(wb); err == nil || !strings.Contains(err.Error(), "write-back") {
		t.Fatalf("ready before the streams exist: %v", err)
	}
	if _, err := (queue.Setup{}).Ensure(t.Context(), js); err != nil {
		t.Fatal(err)
	}
	select {
	case <-wb.Started():
	case <-time.After(30 * time.Second):
		t.Fatal("write-back did not start once the streams existed")
	}
	if err := writeBackReady(wb); err != nil {
		t.Fatalf("not ready after Started: %v", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestWriteBackEndToEnd runs the gateway binary as a ticketing system
// meets it: a job POSTed with a ticket is recovered by a worker, and its
// result comes back by itself, as a signed webhook that the receiver
// verifies and as a work note on the ticket's ServiceNow record (through
// the double, over TLS trusted with SSL_CERT_FILE).
func TestWriteBackEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the gateway binary")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "gateway")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	sys := testsystem.Start(t, graphsim.Config{})

	secret, err := writeback.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	recv, err := receiver.Start(receiver.Config{Secrets: []string{secret}}, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer recv.Close()
	const snowPassword = "snow-password-of-the-test"
	snow := servicenowsim.New(servicenowsim.Config{User: "svc-recoverpasscode", Password: snowPassword})
	defer snow.Close()
	snow.AddRecord("incident", "INC0012345")
	snow.AddRecord("incident", "INC0099999")

	write := func(name, data string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	caFile := write("snow-ca.pem", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: snow.Certificate().Raw})))
	key, hash, _ := gateway.NewAPIKey()
	config := write("gateway.yaml", fmt.Sprintf(`sources:
  ticketing:
    apiKeys: [%q]
    webhooks:
      - url: %s
        secretFile: %s
    servicenow:
      instance: %s
      user: svc-recoverpasscode
      passwordFile: %s
`, hash, recv.URL(), write("hook-secret", secret+"\n"), snow.URL(), write("snow-password", snowPassword+"\n")))

	addr := testsystem.FreeAddr(t)
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(),
		"GATEWAY_CONFIG="+config, "GATEWAY_HTTP_ADDR="+addr, "GATEWAY_SOURCES=",
		"AZURE_TENANT_ID="+testsystem.Tenant, "NATS_URL="+sys.NS.URL(), "SSL_CERT_FILE="+caFile,
		"RECOVER_LOG_LEVEL=debug")
	logs := &testsystem.Buffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
		}
	}()
	// Ready means write-back's consumers are set up: the result of a job
	// submitted from now on is delivered.
	testsystem.WaitReadyz(t, addr, http.StatusOK, 30*time.Second)
	sys.StartWorker(sys.Config("w1"))

	req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/v1/jobs",
		strings.NewReader(`{"managedDeviceId":"`+testsystem.Device+`","ticket":"INC0012345","requestedBy":"agent@contoso.com"}`))
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Prefer", "wait=30")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var res wire.Result
	_ = json.NewDecoder(resp.Body).Decode(&res)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || res.Status != wire.Succeeded || res.Ticket != "INC0012345" {
		t.Fatalf("POST: %d %+v\n%s", resp.StatusCode, res, logs)
	}

	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	if err := recv.Wait(ctx, func(d []receiver.Delivery, _ int) bool { return len(d) > 0 }); err != nil {
		t.Fatalf("no verified webhook delivery: %v\n%s", err, logs)
	}
	for _, d := range recv.Deliveries() {
		if d.ID != res.JobID+"/result" || d.Result.JobID != res.JobID || d.Result.Status != wire.Succeeded || d.Result.Ticket != "INC0012345" {
			t.Errorf("delivery %s: %+v", d.ID, d.Result)
		}
	}
	if n := recv.Refused(); n != 0 {
		t.Errorf("%d deliveries refused", n)
	}
	if err := snow.WaitNotes(ctx, func(n []servicenowsim.Note) bool { return len(n) > 0 }); err != nil {
		t.Fatalf("no work note: %v\n%s", err, logs)
	}
	// At least once: a retried write could add a second note, never one
	// on another record.
	for _, n := range snow.Notes() {
		if n.Number != "INC0012345" || n.Table != "incident" || n.Auth != "basic" ||
			!strings.Contains(n.Text, testsystem.Device) || !strings.Contains(n.Text, "agent@contoso.com") || !strings.Contains(n.Text, res.JobID) {
			t.Errorf("work note %+v", n)
		}
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("gateway exited with %v\n%s", err, logs)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("the gateway did not stop on SIGTERM\n%s", logs)
	}
	out := logs.String()
	for _, s := range []string{key, secret, strings.TrimPrefix(secret, "whsec_"), snowPassword} {
		if strings.Contains(out, s) {
			t.Errorf("the log holds a secret")
		}
	}
	if !strings.Contains(out, `"delivering results"`) {
		t.Errorf("the log does not say write-back started:\n%s", out)
	}
}
