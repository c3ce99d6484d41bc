package devserver_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/recoverpasscode/recoverpasscode/devserver"
	"github.com/recoverpasscode/recoverpasscode/devserver/devservertest"
)

func TestJetStreamIsEnabled(t *testing.T) {
	s := devservertest.Start(t)
	nc, err := nats.Connect(s.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := js.AccountInfo(ctx); err != nil {
		t.Fatalf("account info: %v", err)
	}
}

func TestStartRequiresStoreDir(t *testing.T) {
	if _, err := devserver.Start(devserver.Config{}); err == nil {
		t.Fatal("Start without a store directory succeeded")
	}
}

func TestParseSync(t *testing.T) {
	cases := []struct {
		in       string
		interval time.Duration
		always   bool
		bad      bool
	}{
		{in: ""},
		{in: "always", always: true},
		{in: "ALWAYS", always: true},
		{in: "2m", interval: 2 * time.Minute},
		{in: "10s", interval: 10 * time.Second},
		{in: "0s", bad: true},
		{in: "-1s", bad: true},
		{in: "never", bad: true},
	}
	for _, c := range cases {
		interval, always, err := devserver.ParseSync(c.in)
		switch {
		case c.bad && err == nil:
			t.Errorf("ParseSync(%q) accepted it", c.in)
		case !c.bad && err != nil:
			t.Errorf("ParseSync(%q): %v", c.in, err)
		case interval != c.interval || always != c.always:
			t.Errorf("ParseSync(%q) = %s, %t; want %s, %t", c.in, interval, always, c.interval, c.always)
		}
	}
}

func TestStartRefusesABadSyncOrRoute(t *testing.T) {
	for _, cfg := range []devserver.Config{
		{StoreDir: t.TempDir(), Sync: "sometimes"},
		{StoreDir: t.TempDir(), Cluster: devserver.Cluster{Name: "c", Routes: []string{"no-port"}}},
	} {
		if s, err := devserver.Start(cfg); err == nil {
			s.Shutdown()
			t.Errorf("Start(%+v) succeeded", cfg)
		}
	}
}
