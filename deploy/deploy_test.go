package deploy

import (
	"crypto/rand"
	"encoding/hex"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"golang.org/x/crypto/bcrypt"
)

// sources are the submitting systems that have a NATS user of their own.
var sources = []string{"ticketing", "batch", "automation"}

// natsUser is one user of accounts.conf with the environment variable that
// holds its password.
type natsUser struct {
	name, account, env string
	// hashed users get a bcrypt hash in their variable, the others the
	// password itself, so that both forms the README offers are proved.
	hashed bool
}

var natsUsers = []natsUser{
	{name: "worker", account: "RECOVER", env: "NATS_WORKER_PASSWORD", hashed: true},
	{name: "ticketing", account: "RECOVER", env: "NATS_TICKETING_PASSWORD"},
	{name: "batch", account: "RECOVER", env: "NATS_BATCH_PASSWORD"},
	{name: "automation", account: "RECOVER", env: "NATS_AUTOMATION_PASSWORD", hashed: true},
	{name: "operator", account: "RECOVER", env: "NATS_OPERATOR_PASSWORD", hashed: true},
	{name: "gateway", account: "RECOVER", env: "NATS_GATEWAY_PASSWORD"},
	{name: "console", account: "RECOVER", env: "NATS_CONSOLE_PASSWORD", hashed: true},
	{name: "sys", account: "SYS", env: "NATS_SYS_PASSWORD"},
}

// setPasswords puts a fresh password for every user into the environment the
// configs read, and returns the passwords by user name.
func setPasswords(t *testing.T) map[string]string {
	t.Helper()
	passwords := make(map[string]string, len(natsUsers))
	for _, u := range natsUsers {
		buf := make([]byte, 16)
		if _, err := rand.Read(buf); err != nil {
			t.Fatal(err)
		}
		pw := hex.EncodeToString(buf)
		passwords[u.name] = pw
		value := pw
		if u.hashed {
			// The lowest cost keeps the test fast; the server accepts any.
			hash, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
			if err != nil {
				t.Fatal(err)
			}
			value = `"` + string(hash) + `"`
		}
		t.Setenv(u.env, value)
	}
	return passwords
}

// natsConfigs lists every nats-server config under deploy/.
func natsConfigs(t *testing.T) []string {
	t.Helper()
	var paths []string
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && filepath.Ext(path) == ".conf" {
			paths = append(paths, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) == 0 {
		t.Fatal("no nats-server config found under deploy/")
	}
	return paths
}

// literalPassword matches a password whose value is not a variable
// reference, i.e. a secret written into the repository.
var literalPassword = regexp.MustCompile(`(?m)^\s*[^#]*\bpassword\s*[=:]\s*[^$\s]`)

func TestNATSConfigsLoad(t *testing.T) {
	setPasswords(t)
	for _, path := range natsConfigs(t) {
		t.Run(path, func(t *testing.T) {
			raw, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if loc := literalPassword.FindIndex(raw); loc != nil {
				t.Errorf("a password is written into the file instead of read from the environment: %q", raw[loc[0]:loc[1]])
			}
			opts, err := server.ProcessConfigFile(path)
			if err != nil {
				t.Fatalf("nats-server rejects the config: %v", err)
			}
			checkAccounts(t, opts)
			if opts.Cluster.Name != "" {
				checkCluster(t, path, opts)
			}
		})
	}
}

// checkAccounts proves that the config holds every user in its account with
// the system account set; every config in deploy/nats includes accounts.conf.
func checkAccounts(t *testing.T, opts *server.Options) {
	t.Helper()
	if opts.SystemAccount != "SYS" {
		t.Errorf("system account = %q, want SYS", opts.SystemAccount)
	}
	for _, want := range natsUsers {
		i := slices.IndexFunc(opts.Users, func(u *server.User) bool { return u.Username == want.name })
		if i < 0 {
			t.Errorf("user %q is missing", want.name)
			continue
		}
		u := opts.Users[i]
		if u.Account == nil || u.Account.Name != want.account {
			t.Errorf("user %q is not in account %s", want.name, want.account)
		}
		if want.account == "RECOVER" && u.Permissions == nil {
			t.Errorf("user %q has no permissions, so it may do anything in its account", want.name)
		}
	}
}

// checkCluster proves the node settings that the compose file relies on.
func checkCluster(t *testing.T, path string, opts *server.Options) {
	t.Helper()
	if len(opts.Routes) != 3 {
		t.Errorf("%d cluster routes, want 3", len(opts.Routes))
	}
	if !opts.JetStream || opts.StoreDir == "" {
		t.Errorf("JetStream enabled=%v with store %q, want enabled with a store directory", opts.JetStream, opts.StoreDir)
	}
	if !opts.SyncAlways {
		t.Errorf("JetStream sync_interval is not always (fsync every write before acknowledging it): a power cut of every node could lose acknowledged jobs (see README.md, Durability)")
	}
	if opts.HTTPPort != 8222 {
		t.Errorf("monitoring port = %d, want 8222 (KEDA reads consumer lag there)", opts.HTTPPort)
	}
	node := strings.TrimSuffix(filepath.Base(path), ".conf")
	if strings.HasPrefix(node, "nats-") && opts.ServerName != node {
		t.Errorf("server name = %q, want %q (its route host name)", opts.ServerName, node)
	}
}

// startFromConfig runs the server a config describes on one loopback node:
// its accounts, users and permissions as written, with a random port, a
// temporary store and no cluster, routes or monitoring port. flags turns on
// nats-server feature flags.
func startFromConfig(t *testing.T, path string, flags map[string]bool) *server.Server {
	t.Helper()
	opts, err := server.ProcessConfigFile(path)
	if err != nil {
		t.Fatalf("load %s: %v", path, err)
	}
	opts.Host = "127.0.0.1"
	opts.Port = server.RANDOM_PORT
	opts.HTTPHost, opts.HTTPPort, opts.HTTPSPort = "", 0, 0
	opts.Cluster = server.ClusterOpts{}
	opts.Routes, opts.RoutesStr = nil, ""
	opts.JetStream = true
	opts.StoreDir = t.TempDir()
	opts.NoLog, opts.NoSigs = true, true
	opts.FeatureFlags = flags
	srv, err := server.NewServer(opts)
	if err != nil {
		t.Fatalf("start %s: %v", path, err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		t.Fatalf("%s: server not ready for connections", path)
	}
	t.Cleanup(func() {
		srv.Shutdown()
		srv.WaitForShutdown()
	})
	return srv
}

// TestNATSPermissions proves, for every server config (the cluster nodes and
// dev.conf), each permission the README promises with real clients; and once
// more with the v2 format of acknowledgement and flow-control subjects that a
// server may be switched to.
func TestNATSPermissions(t *testing.T) {
	passwords := setPasswords(t)
	for _, path := range natsConfigs(t) {
		opts, err := server.ProcessConfigFile(path)
		if err != nil {
			t.Fatalf("load %s: %v", path, err)
		}
		if opts.ServerName == "" {
			continue // an include, not a server
		}
		t.Run(path, func(t *testing.T) {
			srv := startFromConfig(t, path, nil)
			testPermissions(t, srv.ClientURL(), passwords)
		})
	}
	t.Run("nats/dev.conf with v2 ack subjects", func(t *testing.T) {
		srv := startFromConfig(t, filepath.Join("nats", "dev.conf"), map[string]bool{server.FeatureFlagJsAckFormatV2: true})
		testPermissions(t, srv.ClientURL(), passwords)
	})
}
