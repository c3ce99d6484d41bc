package main

import (
	"strings"
	"testing"
)

// TestInboxPrefixSetting: --help says what NATS_INBOX_PREFIX is for, and a
// prefix nats.go cannot use is refused naming the variable, before any
// connection is tried.
func TestInboxPrefixSetting(t *testing.T) {
	help := enqueue(t.Context(), t, nil, "--help")
	for _, want := range []string{"-nats-inbox-prefix", "[$NATS_INBOX_PREFIX]", "_INBOX.<user>.>"} {
		if help.code != exitOK || !strings.Contains(help.stderr, want) {
			t.Errorf("--help lacks %q: %s", want, help)
		}
	}
	for _, bad := range []string{"_INBOX.>", "_INBOX.batch.", "_INBOX.*.x"} {
		t.Run(bad, func(t *testing.T) {
			t.Setenv("NATS_INBOX_PREFIX", bad)
			inv := enqueue(t.Context(), t, nil, "results", "--batch", "b", "--nats-url", "nats://127.0.0.1:1")
			if inv.code != exitFailed || !strings.Contains(inv.stderr, "NATS_INBOX_PREFIX") {
				t.Errorf("NATS_INBOX_PREFIX=%s: %s", bad, inv)
			}
		})
	}
}
