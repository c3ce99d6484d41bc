package devservertest_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/recoverpasscode/recoverpasscode/devserver/devservertest"
	"github.com/recoverpasscode/recoverpasscode/internal/testsystem"
)

func TestMain(m *testing.M) {
	devservertest.NodeMain()
	os.Exit(m.Run())
}

// TestProcessClusterKilledTogether proves what TestClusterPowerLoss relies
// on: the nodes are processes that die together on KillAll, and the
// cluster they form again on the same stores holds every message it
// acknowledged before.
func TestProcessClusterKilledTogether(t *testing.T) {
	c := devservertest.StartProcessCluster(t, devservertest.ClusterConfig{Sync: "always"})
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	nc, err := nats.Connect(c.URL(), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond), nats.RetryOnFailedConnect(true))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	cfg := jetstream.StreamConfig{Name: "R3", Subjects: []string{"r3.>"}, Replicas: 3, Storage: jetstream.FileStorage}
	testsystem.Retry(ctx, t, "create the stream", func(ctx context.Context) error {
		_, err := js.CreateOrUpdateStream(ctx, cfg)
		return err
	})
	const n = 50
	for i := range n {
		id := fmt.Sprint(i)
		testsystem.Retry(ctx, t, "publish "+id, func(ctx context.Context) error {
			_, err := js.Publish(ctx, "r3.a", []byte(id), jetstream.WithMsgID(id))
			return err
		})
	}

	c.KillAll()
	for i := range c.Size() {
		if c.Running(i) {
			t.Fatalf("node %d still runs after KillAll", i)
		}
	}
	if err := c.RestartAll(); err != nil {
		t.Fatal(err)
	}
	testsystem.Retry(ctx, t, "read the stream after the restart", func(ctx context.Context) error {
		s, err := js.Stream(ctx, "R3")
		if err != nil {
			return err
		}
		info, err := s.Info(ctx)
		if err != nil {
			return err
		}
		if info.State.Msgs != n {
			return fmt.Errorf("stream holds %d messages, want %d", info.State.Msgs, n)
		}
		return nil
	})
}

func TestClusterConfigRejectsABadSync(t *testing.T) {
	for _, sync := range []string{"sometimes", "-1s", "0s"} {
		if _, err := devservertest.NewProcessCluster(devservertest.ClusterConfig{Dir: t.TempDir(), Sync: sync}); err == nil {
			t.Errorf("sync %q was accepted", sync)
		}
	}
}
