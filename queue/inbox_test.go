package queue

import (
	"errors"
	"flag"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/recoverpasscode/recoverpasscode/internal/envflag"
)

// dial connects with c, without retrying a failed first connect; the test
// closes the connection.
func dial(t *testing.T, c Conn) *nats.Conn {
	t.Helper()
	opts, err := c.Options("test", zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(c.URL, append(opts, nats.RetryOnFailedConnect(false), nats.MaxReconnects(0))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// TestInboxPrefix proves NATS_INBOX_PREFIX against a server that lets the
// user "worker" read only _INBOX.worker.>: with the prefix its requests are
// answered; without it the server refuses its inbox subscription.
func TestInboxPrefix(t *testing.T) {
	url := startServer(t, &server.Options{Users: []*server.User{
		{Username: "responder", Password: "r"},
		{Username: "worker", Password: "w", Permissions: &server.Permissions{
			Publish:   &server.SubjectPermission{Allow: []string{"svc"}},
			Subscribe: &server.SubjectPermission{Allow: []string{"_INBOX.worker.>"}},
		}},
	}})
	responder := dial(t, Conn{URL: url, User: "responder", Password: "r"})
	if _, err := responder.Subscribe("svc", func(m *nats.Msg) { _ = m.Respond([]byte("pong")) }); err != nil {
		t.Fatal(err)
	}
	if err := responder.Flush(); err != nil {
		t.Fatal(err)
	}

	t.Run("with the prefix", func(t *testing.T) {
		nc := dial(t, Conn{URL: url, User: "worker", Password: "w", InboxPrefix: "_INBOX.worker"})
		if inbox := nc.NewInbox(); !strings.HasPrefix(inbox, "_INBOX.worker.") {
			t.Errorf("inbox %q, want one under _INBOX.worker.", inbox)
		}
		m, err := nc.Request("svc", nil, 10*time.Second)
		if err != nil || string(m.Data) != "pong" {
			t.Fatalf("request: %v, %v", m, err)
		}
		if err := nc.LastError(); err != nil {
			t.Errorf("refused: %v", err)
		}
	})
	t.Run("without it", func(t *testing.T) {
		nc := dial(t, Conn{URL: url, User: "worker", Password: "w"})
		if _, err := nc.SubscribeSync(nc.NewInbox()); err != nil {
			t.Fatal(err)
		}
		// The server answers in order: its refusal comes before the PONG.
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
		if err := nc.LastError(); !errors.Is(err, nats.ErrPermissionViolation) {
			t.Errorf("inbox under _INBOX: %v, want a permissions violation", err)
		}
	})
}

func TestValidateInboxPrefix(t *testing.T) {
	for _, tc := range []struct {
		prefix string
		ok     bool
	}{
		{"", true},
		{"_INBOX.worker", true},
		{"_INBOX.ticketing-eu_2", true},
		{"inbox", true},
		{"_INBOX.>", false},
		{"_INBOX.*", false},
		{"_INBOX.a*b", false},
		{"_INBOX.worker.", false},
		{".worker", false},
		{"_INBOX..worker", false},
		{"_INBOX.work er", false},
		{"_INBOX.worker\n", false},
		{"_INBOX.\tworker", false},
		{strings.Repeat("a", maxInboxPrefix+1), false},
	} {
		t.Run(tc.prefix, func(t *testing.T) {
			err := Conn{InboxPrefix: tc.prefix}.Validate()
			if tc.ok {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if _, err := (Conn{InboxPrefix: tc.prefix}).Options("test", zerolog.Nop()); err != nil {
					t.Fatalf("valid, but nats.go refuses it: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), "NATS_INBOX_PREFIX") {
				t.Fatalf("error %v, want one naming NATS_INBOX_PREFIX", err)
			}
			if _, err := (Conn{InboxPrefix: tc.prefix}).Options("test", zerolog.Nop()); err == nil {
				t.Fatal("Options accepted what Validate refuses")
			}
		})
	}
}

func TestInboxPrefixFromTheEnvironment(t *testing.T) {
	t.Setenv("NATS_INBOX_PREFIX", "_INBOX.batch")
	var c Conn
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	c.Flags(envflag.New(fs))
	if err := fs.Parse(nil); err != nil {
		t.Fatal(err)
	}
	if c.InboxPrefix != "_INBOX.batch" {
		t.Errorf("from NATS_INBOX_PREFIX: %q", c.InboxPrefix)
	}
	if err := fs.Parse([]string{"--nats-inbox-prefix", "_INBOX.ticketing"}); err != nil {
		t.Fatal(err)
	}
	if c.InboxPrefix != "_INBOX.ticketing" {
		t.Errorf("the flag did not win: %q", c.InboxPrefix)
	}
}
