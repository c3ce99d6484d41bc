package devservertest_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/recoverpasscode/recoverpasscode/devserver/devservertest"
	"github.com/recoverpasscode/recoverpasscode/internal/testsystem"
)

// TestClusterSurvivesItsLeaderRestarting proves what the reliability suite
// relies on: three nodes form one JetStream cluster holding an R3 stream,
// a stopped stream leader is replaced while its messages stay readable, and
// the node comes back on the same URL with its data.
func TestClusterSurvivesItsLeaderRestarting(t *testing.T) {
	c := devservertest.StartCluster(t)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	if _, err := c.WaitMetaLeader(ctx); err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(c.URL(), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
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
	testsystem.Retry(ctx, t, "publish before", func(ctx context.Context) error {
		_, err := js.Publish(ctx, "r3.a", []byte("before"), jetstream.WithMsgID("before"))
		return err
	})

	leader, err := c.WaitStreamLeader(ctx, devservertest.Account, "R3")
	if err != nil {
		t.Fatal(err)
	}
	c.Stop(leader)
	if c.Running(leader) {
		t.Fatalf("node %d still runs after Stop", leader)
	}
	next, err := c.WaitStreamLeader(ctx, devservertest.Account, "R3")
	if err != nil {
		t.Fatal(err)
	}
	if next == leader {
		t.Fatalf("the stopped node %d is still the leader", leader)
	}
	testsystem.Retry(ctx, t, "publish while a node is down", func(ctx context.Context) error {
		_, err := js.Publish(ctx, "r3.a", []byte("during"), jetstream.WithMsgID("during"))
		return err
	})

	if err := c.Restart(leader); err != nil {
		t.Fatal(err)
	}
	direct, err := nats.Connect(c.NodeURL(leader))
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Close()
	djs, err := jetstream.New(direct)
	if err != nil {
		t.Fatal(err)
	}
	testsystem.Retry(ctx, t, "read the stream through the restarted node", func(ctx context.Context) error {
		s, err := djs.Stream(ctx, "R3")
		if err != nil {
			return err
		}
		info, err := s.Info(ctx)
		if err != nil {
			return err
		}
		if info.State.Msgs != 2 {
			return fmt.Errorf("stream holds %d messages, want 2", info.State.Msgs)
		}
		return nil
	})
}
