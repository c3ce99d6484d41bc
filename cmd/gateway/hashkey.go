package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/recoverpasscode/recoverpasscode/gateway"
	"github.com/recoverpasscode/recoverpasscode/wire"
)

const hashKeyUsage = `gateway hash-key makes a new random API key (256 bits) and prints it with its hash.

Usage:
  gateway hash-key [--source NAME]
  gateway hash-key --stdin            hash a key read from standard input instead

Give the key to the calling system (Authorization: Bearer <key>, or X-API-Key: <key>) and
store only the hash, in GATEWAY_CONFIG (sources.<name>.apiKeys) or GATEWAY_SOURCES
(<name>=sha256:<hex>). Several hashes per source let a key be replaced without downtime:
add the new one, move the caller to its key, then remove the old hash. The key is printed
once; the gateway cannot show it again.

Flags:
`

// hashKey runs `gateway hash-key` and returns the exit status.
func hashKey(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("gateway hash-key", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), hashKeyUsage)
		fs.PrintDefaults()
	}
	source := fs.String("source", "ticketing", "the source the key names, for the configuration lines printed")
	fromStdin := fs.Bool("stdin", false, "hash the key on standard input (its first line) instead of making one")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 || !wire.ValidToken(*source) {
		fmt.Fprintln(stderr, "gateway hash-key: want --source NAME (one subject token) and no arguments")
		return 2
	}
	var key, hash string
	if *fromStdin {
		line, err := bufio.NewReader(stdin).ReadString('\n')
		key = strings.TrimSpace(line)
		if key == "" {
			fmt.Fprintln(stderr, "gateway hash-key: no key on standard input", err)
			return 1
		}
		hash = gateway.HashAPIKey(key)
	} else {
		var err error
		if key, hash, err = gateway.NewAPIKey(); err != nil {
			fmt.Fprintln(stderr, "gateway hash-key:", err)
			return 1
		}
		fmt.Fprintf(stdout, "key:  %s\n", key)
	}
	fmt.Fprintf(stdout, "hash: %s\n\n", hash)
	fmt.Fprintf(stdout, "GATEWAY_CONFIG:   sources: {%s: {apiKeys: [\"%s\"]}}\n", *source, hash)
	fmt.Fprintf(stdout, "GATEWAY_SOURCES:  %s=%s\n", *source, hash)
	return 0
}
