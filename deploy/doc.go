// Package deploy holds the deployment artifacts of recoverpasscode: the
// nats-server configuration with its accounts and permissions, the container
// image, the Kubernetes manifests, the compose file, the systemd unit, the
// Prometheus alerts and the Grafana dashboard (README.md in this directory
// maps them).
//
// It has no Go API. Its tests keep the artifacts honest: every NATS config is
// loaded with nats-server's own parser and its permissions are proved against
// a real server with real clients, and every YAML and JSON file is parsed and
// checked against the contract in DESIGN.md (environment variable and metric
// names).
package deploy
