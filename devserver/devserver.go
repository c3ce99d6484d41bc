// Package devserver runs an embedded nats-server with JetStream enabled:
// the NATS half of `worker --dev` (and of the bench), so that trying the
// worker out exercises the same server code as production. Tests start
// theirs through devserver/devservertest, which builds on this package.
package devserver

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Config describes the embedded server. The zero value listens on a random
// loopback port and stores JetStream data in StoreDir, which is required.
type Config struct {
	// Host to listen on. Defaults to 127.0.0.1.
	Host string
	// Port to listen on. Zero picks a free port.
	Port int
	// StoreDir holds JetStream data. Required.
	StoreDir string
	// Name is the server name. Defaults to "recoverpasscode-dev".
	Name string
	// StartTimeout bounds how long Start waits for the server to accept
	// connections. Defaults to 10s.
	StartTimeout time.Duration
	// Sync is JetStream's sync_interval as a server configuration file
	// writes it (see ParseSync). Empty keeps the server's default.
	Sync string
	// Cluster, when its Name is set, makes the server one node of a
	// JetStream cluster.
	Cluster Cluster
	// Users, when set, are the only users the server accepts, with their
	// permissions, so that a test can run a component as a user with
	// least privilege; a client without credentials is NoAuthUser (one of
	// Users, or none).
	Users      []*server.User
	NoAuthUser string
}

// Cluster places a server in a JetStream cluster.
type Cluster struct {
	// Name is the cluster's name, the same on every node.
	Name string
	// Port listens for routes from the other nodes, on Config.Host.
	Port int
	// Routes are the host:port route addresses of every node; a node's own
	// address among them is skipped by the server.
	Routes []string
}

// ParseSync reads a JetStream sync_interval setting as nats-server reads
// its configuration file: "always" (any case) fsyncs every write before it
// is acknowledged; a positive duration such as "2m" fsyncs in the
// background that often; empty keeps the server's default, a background
// fsync every 2 minutes.
func ParseSync(s string) (interval time.Duration, always bool, err error) {
	switch {
	case s == "":
		return 0, false, nil
	case strings.EqualFold(s, "always"):
		return 0, true, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, false, fmt.Errorf("sync %q: want \"always\" or a positive duration", s)
	}
	return d, false, nil
}

// Server is a running embedded nats-server. It is safe for concurrent use.
type Server struct {
	srv *server.Server
}

// Start starts an embedded nats-server with JetStream and waits until it
// accepts connections.
func Start(cfg Config) (*Server, error) {
	if cfg.StoreDir == "" {
		return nil, errors.New("devserver: a store directory is required")
	}
	if cfg.Host == "" {
		cfg.Host = "127.0.0.1"
	}
	if cfg.Port == 0 {
		cfg.Port = server.RANDOM_PORT
	}
	if cfg.Name == "" {
		cfg.Name = "recoverpasscode-dev"
	}
	if cfg.StartTimeout == 0 {
		cfg.StartTimeout = 10 * time.Second
	}
	interval, always, err := ParseSync(cfg.Sync)
	if err != nil {
		return nil, fmt.Errorf("devserver: %w", err)
	}
	opts := &server.Options{
		ServerName:   cfg.Name,
		Host:         cfg.Host,
		Port:         cfg.Port,
		JetStream:    true,
		StoreDir:     cfg.StoreDir,
		SyncInterval: interval,
		SyncAlways:   always,
		NoLog:        true,
		NoSigs:       true,
		Users:        cfg.Users,
		NoAuthUser:   cfg.NoAuthUser,
	}
	if cfg.Cluster.Name != "" {
		opts.Cluster.Name = cfg.Cluster.Name
		opts.Cluster.Host = cfg.Host
		opts.Cluster.Port = cfg.Cluster.Port
		for _, r := range cfg.Cluster.Routes {
			if _, _, err := net.SplitHostPort(r); err != nil {
				return nil, fmt.Errorf("devserver: route %q: want host:port", r)
			}
			opts.Routes = append(opts.Routes, &url.URL{Scheme: "nats-route", Host: r})
		}
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("devserver: %w", err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(cfg.StartTimeout) {
		srv.Shutdown()
		return nil, fmt.Errorf("devserver: not ready to accept connections on %s:%d within %s", cfg.Host, cfg.Port, cfg.StartTimeout)
	}
	return &Server{srv: srv}, nil
}

// URL is the nats:// URL clients connect to.
func (s *Server) URL() string { return s.srv.ClientURL() }

// Shutdown stops the server and waits for it to exit.
func (s *Server) Shutdown() {
	s.srv.Shutdown()
	s.srv.WaitForShutdown()
}
