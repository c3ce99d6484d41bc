package main

import (
	"os"
	"os/exec"
	"reflect"
	"strings"
	"testing"

	"github.com/recoverpasscode/recoverpasscode/internal/testsystem"
	"github.com/recoverpasscode/recoverpasscode/service"
)

// TestInboxSettings: the worker reads its inbox prefix and the per-source
// inbox rule from the environment, a flag wins, a prefix nats.go cannot use
// is refused naming its variable, and --help says what each is for.
func TestInboxSettings(t *testing.T) {
	t.Setenv("AZURE_CLIENT_SECRET", "s")
	ids := []string{"--tenant-id", testsystem.Tenant, "--client-id", testsystem.Client}
	t.Run("from the environment", func(t *testing.T) {
		t.Setenv("NATS_INBOX_PREFIX", "_INBOX.worker")
		t.Setenv("RECOVER_INBOX_PER_SOURCE", "true")
		c, err := parseConfig(ids)
		if err != nil {
			t.Fatal(err)
		}
		if c.NATS.InboxPrefix != "_INBOX.worker" || !c.InboxPerSource {
			t.Errorf("inbox prefix %q, per source %v; want _INBOX.worker, true", c.NATS.InboxPrefix, c.InboxPerSource)
		}
	})
	t.Run("by flag, off by default", func(t *testing.T) {
		t.Setenv("NATS_INBOX_PREFIX", "_INBOX.other")
		t.Setenv("RECOVER_INBOX_PER_SOURCE", "")
		os.Unsetenv("RECOVER_INBOX_PER_SOURCE")
		c, err := parseConfig(append([]string{"--nats-inbox-prefix", "_INBOX.worker"}, ids...))
		if err != nil {
			t.Fatal(err)
		}
		if c.NATS.InboxPrefix != "_INBOX.worker" || c.InboxPerSource {
			t.Errorf("inbox prefix %q, per source %v; want _INBOX.worker, false", c.NATS.InboxPrefix, c.InboxPerSource)
		}
	})
	t.Run("a wildcard prefix", func(t *testing.T) {
		t.Setenv("NATS_INBOX_PREFIX", "_INBOX.>")
		if _, err := parseConfig(ids); err == nil || !strings.Contains(err.Error(), "NATS_INBOX_PREFIX") {
			t.Errorf("error %v, want one naming NATS_INBOX_PREFIX", err)
		}
	})
	t.Run("--help", func(t *testing.T) {
		cmd := exec.Command(os.Args[0], "--help")
		cmd.Env = append(os.Environ(), childEnv+"=1")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("--help: %v\n%s", err, out)
		}
		for _, want := range []string{"[$NATS_INBOX_PREFIX]", "_INBOX.<user>.>", "[$RECOVER_INBOX_PER_SOURCE]", "_INBOX.<source>."} {
			if !strings.Contains(string(out), want) {
				t.Errorf("--help lacks %q:\n%s", want, out)
			}
		}
	})
}

// TestFlagsDefaultToTheServiceDefaults: with nothing in the environment,
// every flag's default is service.DefaultConfig's, so --help shows what a
// worker runs with and no layer keeps a default of its own.
func TestFlagsDefaultToTheServiceDefaults(t *testing.T) {
	clearWorkerEnv(t)
	c, err := parseConfig([]string{"--dev"}) // --dev: no credentials needed
	if err != nil {
		t.Fatal(err)
	}
	want := service.DefaultConfig()
	want.Credential.GraphBaseURL = want.GraphURL
	if !reflect.DeepEqual(c.Config, want) {
		t.Errorf("flag defaults:\n got %+v\nwant %+v", c.Config, want)
	}
}

// clearWorkerEnv unsets, for the test, every variable the worker reads.
func clearWorkerEnv(t *testing.T) {
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		for _, prefix := range []string{"NATS_", "AZURE_", "GRAPH_", "RECOVER_", "GATEWAY_"} {
			if strings.HasPrefix(k, prefix) {
				t.Setenv(k, "")
				os.Unsetenv(k)
			}
		}
	}
}

// TestDevLogsForPeople: --dev logs in the console format when stderr is a
// terminal; JSON stays the format without a terminal, without --dev, and
// whenever the flag or the variable asks for it.
func TestDevLogsForPeople(t *testing.T) {
	creds := []string{"--tenant-id", testsystem.Tenant, "--client-id", testsystem.Client, "--client-secret", "s"}
	for _, tt := range []struct {
		name     string
		args     []string
		env      string // RECOVER_LOG_FORMAT, if set
		terminal bool
		want     string
	}{
		{"--dev on a terminal", []string{"--dev"}, "", true, "console"},
		{"--dev into a pipe or file", []string{"--dev"}, "", false, "json"},
		{"--dev, JSON by flag", []string{"--dev", "--log-format", "json"}, "", true, "json"},
		{"--dev, JSON by variable", []string{"--dev"}, "json", true, "json"},
		{"production on a terminal", creds, "", true, "json"},
		{"production, console by flag", append([]string{"--log-format", "console"}, creds...), "", false, "console"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			clearWorkerEnv(t)
			if tt.env != "" {
				t.Setenv("RECOVER_LOG_FORMAT", tt.env)
			}
			c, err := parseConfig(tt.args)
			if err != nil {
				t.Fatal(err)
			}
			c.forPeople(tt.terminal)
			if c.LogFormat != tt.want {
				t.Errorf("log format %q, want %q", c.LogFormat, tt.want)
			}
		})
	}
}
