// Package devserver runs an embedded nats-server with JetStream enabled:
// the NATS half of `worker --dev` (and of the bench), so that trying the
// worker out exercises the same server code as production. Tests start
// theirs through devserver/devservertest, which builds on this package.
package devserver

import (
	"errors"
	"fmt"
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
	opts := &server.Options{
		ServerName: cfg.Name,
		Host:       cfg.Host,
		Port:       cfg.Port,
		JetStream:  true,
		StoreDir:   cfg.StoreDir,
		NoLog:      true,
		NoSigs:     true,
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
