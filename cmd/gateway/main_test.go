package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/recoverpasscode/recoverpasscode/devserver/devservertest"
	"github.com/recoverpasscode/recoverpasscode/gateway"
	"github.com/recoverpasscode/recoverpasscode/queue"
)

const tenant = "33333333-3333-4333-8333-333333333333"

// TestLinksNeitherMSALNorTheEngine: the gateway binary holds no Graph
// credential code, no engine and no test scaffolding.
func TestLinksNeitherMSALNorTheEngine(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 20 {
		t.Fatalf("go list -deps listed only %v", deps)
	}
	const mod = "github.com/recoverpasscode/recoverpasscode/"
	forbidden := []string{mod + "job", mod + "idempotency", mod + "graph", mod + "worker", mod + "service", mod + "devserver", mod + "internal/testsystem", "testing"}
	for _, d := range deps {
		if strings.Contains(d, "microsoft-authentication-library") || strings.Contains(d, "go-pkcs12") {
			t.Errorf("cmd/gateway links %s", d)
		}
		for _, f := range forbidden {
			if d == f || strings.HasPrefix(d, f+"/") {
				t.Errorf("cmd/gateway links %s", d)
			}
		}
	}
}

func TestHelpNamesEverySetting(t *testing.T) {
	var stderr bytes.Buffer
	if _, err := parseConfig([]string{"--help"}, &stderr); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("--help: %v", err)
	}
	for _, name := range []string{
		"GATEWAY_HTTP_ADDR", "GATEWAY_AUDIENCE", "GATEWAY_CONFIG", "GATEWAY_SOURCES", "GATEWAY_ROLE", "GATEWAY_DRAIN_TIMEOUT",
		"NATS_URL", "NATS_CREDS", "NATS_NKEY", "NATS_USER", "NATS_PASSWORD", "NATS_CA", "NATS_CERT", "NATS_KEY", "NATS_INBOX_PREFIX",
		"RECOVER_PREFIX", "AZURE_TENANT_ID", "AZURE_AUTHORITY_HOST", "RECOVER_TENANTS", "SSL_CERT_FILE",
		"RECOVER_LOG_FORMAT", "RECOVER_LOG_LEVEL", "hash-key", "apiKeys", "entraApps", "webhooks", "servicenow", "jira",
		"127.0.0.1:8080", "Jobs.Submit",
	} {
		if !strings.Contains(stderr.String(), name) {
			t.Errorf("--help does not name %s", name)
		}
	}
}

func TestHashKey(t *testing.T) {
	var out bytes.Buffer
	if code := hashKey([]string{"--source", "automation"}, nil, &out, io.Discard); code != 0 {
		t.Fatalf("exit %d", code)
	}
	var key, hash string
	for _, line := range strings.Split(out.String(), "\n") {
		if v, ok := strings.CutPrefix(line, "key:  "); ok {
			key = v
		}
		if v, ok := strings.CutPrefix(line, "hash: "); ok {
			hash = v
		}
	}
	if key == "" || hash != gateway.HashAPIKey(key) || !strings.Contains(out.String(), "automation="+hash) {
		t.Fatalf("output:\n%s", out.String())
	}
	out.Reset()
	if code := hashKey([]string{"--stdin"}, strings.NewReader(key+"\n"), &out, io.Discard); code != 0 || strings.Contains(out.String(), key) || !strings.Contains(out.String(), hash) {
		t.Fatalf("--stdin: exit %d\n%s", code, out.String())
	}
}

func TestConfigErrors(t *testing.T) {
	t.Setenv("AZURE_TENANT_ID", tenant)
	for _, tc := range []struct {
		name string
		env  map[string]string
		want string
	}{
		{"no source", nil, "no source is configured"},
		{"bad short form", map[string]string{"GATEWAY_SOURCES": "ticketing=rpk_secret"}, "GATEWAY_SOURCES"},
		{"missing file", map[string]string{"GATEWAY_CONFIG": filepath.Join(t.TempDir(), "nope.yaml")}, "GATEWAY_CONFIG"},
		{"entra without audience", map[string]string{"GATEWAY_SOURCES": "a=app:6f1c7a2e-1111-4222-8333-444444444444"}, "GATEWAY_AUDIENCE"},
		{"bad tenant", map[string]string{"GATEWAY_SOURCES": "a=" + gateway.HashAPIKey("k"), "AZURE_TENANT_ID": "contoso"}, "AZURE_TENANT_ID"},
		{"bad duration", map[string]string{"GATEWAY_SOURCES": "a=" + gateway.HashAPIKey("k"), "GATEWAY_DRAIN_TIMEOUT": "soon"}, "GATEWAY_DRAIN_TIMEOUT"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			_, err := parseConfig(nil, io.Discard)
			if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "rpk_secret") {
				t.Fatalf("error %v, want it to name %s", err, tc.want)
			}
		})
	}
}

// TestRun runs the command against an embedded NATS server configured
// through the environment, submits a job and stops it with its context.
func TestRun(t *testing.T) {
	ns := devservertest.Start(t)
	nc, err := nats.Connect(ns.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	if _, err := (queue.Setup{}).Ensure(t.Context(), js); err != nil {
		t.Fatal(err)
	}
	key, hash, _ := gateway.NewAPIKey()
	file := filepath.Join(t.TempDir(), "gateway.yaml")
	if err := os.WriteFile(file, []byte("sources:\n  ticketing:\n    apiKeys: [\""+hash+"\"]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("GATEWAY_CONFIG", file)
	t.Setenv("GATEWAY_HTTP_ADDR", "127.0.0.1:0")
	t.Setenv("AZURE_TENANT_ID", tenant)
	t.Setenv("NATS_URL", ns.URL())
	cfg, err := parseConfig(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addr := make(chan string, 1)
	var logs bytes.Buffer
	lw := &syncWriter{w: &logs}
	done := make(chan error, 1)
	go func() { done <- run(ctx, context.Background(), cfg, lw, func(a string) { addr <- a }) }()
	base := "http://" + <-addr

	req, _ := http.NewRequest(http.MethodPost, base+"/v1/jobs", strings.NewReader(`{"managedDeviceId":"2d6a3d0e-8f5c-4d7a-9b1e-0b2f3c4d5e6f"}`))
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var body map[string]string
	_ = json.NewDecoder(resp.Body).Decode(&body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted || body["status"] != "queued" {
		t.Fatalf("POST: %d %v", resp.StatusCode, body)
	}
	stream, err := js.Stream(t.Context(), "RECOVERPASSCODE_JOBS")
	if err != nil {
		t.Fatal(err)
	}
	msg, err := stream.GetMsg(t.Context(), 1)
	if err != nil || msg.Subject != "recoverpasscode.jobs.ticketing" || msg.Header.Get("Nats-Msg-Id") != body["jobId"] {
		t.Fatalf("the job on NATS: %v %v", msg, err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run: %v", err)
	}
	lw.mu.Lock()
	defer lw.mu.Unlock()
	if !strings.Contains(logs.String(), `"gateway serving"`) || strings.Contains(logs.String(), key) {
		t.Fatalf("the log says nothing of serving, or holds the API key:\n%s", logs.String())
	}
}

// syncWriter serialises writes to w, for a log written by several
// goroutines.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}
