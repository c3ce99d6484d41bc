package deploy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// workerEnv is every environment variable the worker reads (DESIGN.md's
// configuration table, the contract's additions and cmd/worker's own
// settings).
var workerEnv = setOf(
	"NATS_URL", "NATS_CREDS", "NATS_NKEY", "NATS_USER", "NATS_PASSWORD",
	"NATS_CA", "NATS_CERT", "NATS_KEY", "NATS_INBOX_PREFIX",
	"AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET",
	"AZURE_CLIENT_CERTIFICATE_PATH", "AZURE_CLIENT_CERTIFICATE_PASSWORD",
	"AZURE_FEDERATED_TOKEN_FILE", "AZURE_AUTHORITY_HOST", "GRAPH_BASE_URL",
	"RECOVER_TENANTS", "RECOVER_INBOX_PER_SOURCE", "RECOVER_RATE_LIMIT", "RECOVER_RATE_BURST", "RECOVER_SOURCE_LIMITS", "RECOVER_CONCURRENCY",
	"RECOVER_HTTP_ADDR", "RECOVER_LOG_FORMAT", "RECOVER_TOKEN_CACHE",
	"RECOVER_PREFIX", "RECOVER_REPLICAS", "RECOVER_KEYS_TTL", "RECOVER_LEASE",
	"RECOVER_ATTEMPT_TIMEOUT", "RECOVER_MAX_ATTEMPTS", "RECOVER_DRAIN_TIMEOUT",
	"RECOVER_ACK_WAIT", "RECOVER_WORKER_NAME", "RECOVER_LOG_LEVEL", "RECOVER_DEV_DIR",
	"RECOVER_READ_RATE_LIMIT", "RECOVER_FOLLOW_SOURCES", "RECOVER_FOLLOW_FIRST", "RECOVER_FOLLOW_MAX",
	"RECOVER_FOLLOW_FOR", "RECOVER_FOLLOW_CONCURRENCY",
	// With --dev, where it serves the gateway, and its sources.
	"GATEWAY_HTTP_ADDR", "GATEWAY_CONFIG",
	// Read by the Go runtime rather than the worker.
	"GOMEMLIMIT",
)

// workerMetrics is every metric the worker exports.
var workerMetrics = setOf(
	"recoverpasscode_jobs_total", "recoverpasscode_graph_calls_total",
	"recoverpasscode_graph_latency_seconds", "recoverpasscode_ratelimit_wait_seconds",
	"recoverpasscode_tenant_paused", "recoverpasscode_pauses_total", "recoverpasscode_ratelimit_learned_calls", "recoverpasscode_jobs_held",
	"recoverpasscode_jobs_in_flight", "recoverpasscode_consumer_pending",
	"recoverpasscode_consumer_redelivered", "recoverpasscode_token_errors_total",
	"recoverpasscode_dlq_total", "recoverpasscode_audit_lost_total", "recoverpasscode_ready",
	"recoverpasscode_follows_in_progress", "recoverpasscode_confirmations_total",
	"recoverpasscode_follow_seconds", "recoverpasscode_follow_reads_total",
)

func setOf(names ...string) map[string]bool {
	s := make(map[string]bool, len(names))
	for _, n := range names {
		s[n] = true
	}
	return s
}

// filesWithExt lists the files under deploy/ whose names end in one of exts.
func filesWithExt(t *testing.T, exts ...string) []string {
	t.Helper()
	var paths []string
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		for _, ext := range exts {
			if !d.IsDir() && strings.HasSuffix(path, ext) {
				paths = append(paths, path)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return paths
}

// yamlDocs decodes every document of a YAML file (YAML is a superset of
// JSON, so JSON files decode too).
func yamlDocs(path string) ([]map[string]any, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	var docs []map[string]any
	for {
		var doc map[string]any
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", len(docs)+1, err)
		}
		if doc != nil {
			docs = append(docs, doc)
		}
	}
}

// mustDocs is yamlDocs for a file a test cannot do without.
func mustDocs(t *testing.T, path string) []map[string]any {
	t.Helper()
	docs, err := yamlDocs(path)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return docs
}

// dig walks v along path (map keys and list indexes) and returns what it
// finds there, or nil.
func dig(v any, path ...any) any {
	for _, step := range path {
		switch key := step.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = m[key]
		case int:
			l, ok := v.([]any)
			if !ok || key >= len(l) {
				return nil
			}
			v = l[key]
		}
	}
	return v
}

// str is dig for a string, "" when absent.
func str(v any, path ...any) string {
	s, _ := dig(v, path...).(string)
	return s
}

func TestYAMLAndJSONParse(t *testing.T) {
	paths := filesWithExt(t, ".yaml", ".yml", ".json")
	if len(paths) == 0 {
		t.Fatal("no YAML or JSON file under deploy/")
	}
	for _, path := range paths {
		t.Run(path, func(t *testing.T) {
			if strings.HasSuffix(path, ".json") {
				raw, err := os.ReadFile(path)
				if err != nil {
					t.Fatal(err)
				}
				if !json.Valid(raw) {
					t.Fatal("not valid JSON")
				}
			}
			docs, err := yamlDocs(path)
			if err != nil {
				t.Fatal(err)
			}
			if len(docs) == 0 {
				t.Fatal("no document")
			}
		})
	}
}

// TestEnvironmentNames proves that every place that configures the worker
// uses the names the worker reads, so a typo cannot silently leave a setting
// at its default.
func TestEnvironmentNames(t *testing.T) {
	names := map[string][]string{} // where -> names
	for _, doc := range mustDocs(t, filepath.Join("kubernetes", "configmap.yaml")) {
		for k := range dig(doc, "data").(map[string]any) {
			names["kubernetes/configmap.yaml"] = append(names["kubernetes/configmap.yaml"], k)
		}
	}
	for _, doc := range mustDocs(t, filepath.Join("kubernetes", "deployment.yaml")) {
		containers, _ := dig(doc, "spec", "template", "spec", "containers").([]any)
		for _, c := range containers {
			env, _ := dig(c, "env").([]any)
			for _, e := range env {
				names["kubernetes/deployment.yaml"] = append(names["kubernetes/deployment.yaml"], str(e, "name"))
			}
		}
	}
	compose := mustDocs(t, "compose.yaml")[0]
	for service, def := range dig(compose, "services").(map[string]any) {
		env, _ := dig(def, "environment").(map[string]any)
		for k := range env {
			if service == "gateway" {
				continue // TestGatewayEnvironmentNames
			}
			if strings.HasPrefix(service, "nats-") {
				if !natsPasswordVar(k) {
					t.Errorf("compose.yaml: %s sets %s, which no nats config reads", service, k)
				}
				continue
			}
			names["compose.yaml "+service] = append(names["compose.yaml "+service], k)
		}
	}
	names["systemd env example"] = envFileNames(t, filepath.Join("systemd", "recoverpasscode-worker.env.example"))
	names["Dockerfile (worker)"] = dockerfileEnvNames(t, "Dockerfile")["worker"]

	for where, list := range names {
		if len(list) == 0 {
			t.Errorf("%s: no environment variable found; the test no longer reads it right", where)
		}
		for _, n := range list {
			if !workerEnv[n] {
				t.Errorf("%s: %s is not a variable the worker reads", where, n)
			}
		}
	}
}

// TestNATSPasswordsListed proves that every password variable the NATS
// configs read is passed to the compose cluster's nodes (nats-server refuses
// a config whose variable is unset) and named where an operator sets them
// up: the header of accounts.conf, dev.conf and README.md.
func TestNATSPasswordsListed(t *testing.T) {
	compose := mustDocs(t, "compose.yaml")[0]
	env, _ := dig(compose, "x-nats", "environment").(map[string]any)
	docs := map[string]string{}
	for _, path := range []string{filepath.Join("nats", "accounts.conf"), filepath.Join("nats", "dev.conf"), "README.md"} {
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		docs[path] = string(raw)
	}
	for _, u := range natsUsers {
		if _, ok := env[u.env]; !ok {
			t.Errorf("compose.yaml: the NATS nodes do not get %s (user %s)", u.env, u.name)
		}
		for path, text := range docs {
			if !strings.Contains(text, u.env) {
				t.Errorf("%s does not name %s (user %s)", path, u.env, u.name)
			}
		}
	}
}

func natsPasswordVar(name string) bool {
	for _, u := range natsUsers {
		if u.env == name {
			return true
		}
	}
	return false
}

// envFileNames lists the variables of an environment file, commented-out
// examples included.
func envFileNames(t *testing.T, path string) []string {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, line := range strings.Split(string(raw), "\n") {
		line = strings.TrimPrefix(strings.TrimSpace(line), "#")
		name, _, ok := strings.Cut(line, "=")
		if ok && name != "" && strings.Trim(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_") == "" {
			names = append(names, name)
		}
	}
	return names
}

// dockerfileEnvNames lists the variables set by ENV instructions, by the
// name of the stage (FROM … AS <name>) that sets them.
func dockerfileEnvNames(t *testing.T, path string) map[string][]string {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	names := map[string][]string{}
	stage := ""
	for _, line := range strings.Split(string(raw), "\n") {
		if f := strings.Fields(line); len(f) == 4 && f[0] == "FROM" && strings.EqualFold(f[2], "AS") {
			stage = f[3]
		}
		rest, ok := strings.CutPrefix(line, "ENV ")
		if !ok {
			continue
		}
		for _, kv := range strings.Fields(rest) {
			name, _, _ := strings.Cut(kv, "=")
			names[stage] = append(names[stage], name)
		}
	}
	return names
}
