package main

import (
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/recoverpasscode/recoverpasscode/internal/envflag"
	"github.com/recoverpasscode/recoverpasscode/queue"
	"github.com/recoverpasscode/recoverpasscode/wire"
)

// connFlags are the settings every subcommand shares: how to reach NATS
// and the subject prefix.
type connFlags struct {
	nats   queue.Conn
	prefix string
}

func (c *connFlags) define(s *envflag.Set) {
	c.nats.Flags(s)
	s.StringVar(&c.prefix, "prefix", "RECOVER_PREFIX", wire.DefaultPrefix, "first token of every subject")
}

func (c *connFlags) names() wire.Names { return wire.Names{Prefix: c.prefix} }

// connect connects to NATS; the caller closes the connection. Unlike the
// worker, a command does not wait for a server to come up: an unreachable
// one is reported at once. A connection lost later is retried, and said so
// on stderr.
func (c *connFlags) connect(stderr io.Writer) (*nats.Conn, jetstream.JetStream, error) {
	log := zerolog.New(zerolog.ConsoleWriter{Out: stderr, NoColor: true, PartsExclude: []string{zerolog.TimestampFieldName}}).Level(zerolog.InfoLevel)
	opts, err := c.nats.Options("recoverpasscode enqueue", log)
	if err != nil {
		return nil, nil, err
	}
	opts = append(opts, nats.RetryOnFailedConnect(false))
	nc, err := nats.Connect(strings.TrimSpace(c.nats.URL), opts...)
	if err != nil {
		// The URL is not repeated: it may hold a user and password.
		return nil, nil, fmt.Errorf("connect to NATS (--nats-url, $NATS_URL): %w", err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return nc, js, nil
}

// newFlagSet returns a flag set whose --help prints usage and then the
// flags, each with the environment variable that sets it.
func newFlagSet(name, usage string, stderr io.Writer) (*flag.FlagSet, *envflag.Set) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usage)
		fs.PrintDefaults()
	}
	return fs, envflag.New(fs)
}

// parse parses args, refusing positional arguments and reporting malformed
// environment variables.
func parse(fs *flag.FlagSet, s *envflag.Set, args []string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q (see --help)", fs.Arg(0))
	}
	return s.Err()
}

// sourceOrDefault is the --source flag's value (which defaults to
// $RECOVER_SOURCE), else def: the default depends on the subcommand.
func sourceOrDefault(src, def string) (string, error) {
	if src == "" {
		src = def
	}
	if !wire.ValidToken(src) {
		return "", fmt.Errorf("--source %q: want one subject token (letters, digits, '-', '_')", src)
	}
	return src, nil
}
