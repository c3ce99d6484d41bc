package reliability_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/recoverpasscode/recoverpasscode/devserver/devservertest"
	"github.com/recoverpasscode/recoverpasscode/graph/graphsim"
	"github.com/recoverpasscode/recoverpasscode/queue"
	"github.com/recoverpasscode/recoverpasscode/wire"
)

// TestClusterNodeStopped runs a batch through two workers on a three-node
// JetStream cluster (R3 streams and buckets) and stops one node mid-batch:
// the meta leader, the leader of the jobs stream, or a node leading
// neither. Half the batch is submitted while the node is down, and the
// workers must make progress with two nodes before it comes back. Nothing
// is lost or doubled.
func TestClusterNodeStopped(t *testing.T) {
	t.Parallel()
	names := wire.Names{}
	cases := []struct {
		name string
		pick func(c *devservertest.Cluster) int
	}{
		{"meta leader", func(c *devservertest.Cluster) int { return c.MetaLeader() }},
		{"jobs stream leader", func(c *devservertest.Cluster) int {
			return c.StreamLeader(devservertest.Account, names.JobsStream())
		}},
		{"non-leader", func(c *devservertest.Cluster) int {
			meta, jobs := c.MetaLeader(), c.StreamLeader(devservertest.Account, names.JobsStream())
			if meta < 0 || jobs < 0 {
				return -1
			}
			for i := range c.Size() {
				if i != meta && i != jobs {
					return i
				}
			}
			return -1
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			began := time.Now()
			at := func() time.Duration { return time.Since(began).Round(100 * time.Millisecond) }
			c := devservertest.StartCluster(t)
			ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
			defer cancel()
			if _, err := c.WaitMetaLeader(ctx); err != nil {
				t.Fatal(err)
			}
			r := newRig(t, graphsim.Config{Latency: 100 * time.Millisecond}, c.URL(), 3)
			for _, name := range []string{"cluster-a", "cluster-b"} {
				cfg := r.config(name)
				cfg.Concurrency = 4 // about 80 jobs a second: the batch outlasts the fault
				r.startWorker(cfg)
			}
			jobs, want := batch("cluster", 0, 300, 10)
			r.submit(ctx, "batch", jobs[:150])
			r.waitCalls(ctx, 30)

			victim := waitPick(ctx, t, func() int { return tc.pick(c) })
			roles := rolesOf(c, victim)
			c.Stop(victim)
			down := len(r.gs.Calls())
			t.Logf("%s: stopped %s (%s) after %d Graph calls", at(), c.NodeName(victim), roles, down)
			r.submit(ctx, "batch", jobs[150:])
			r.waitCalls(ctx, down+60) // progress on two nodes

			if err := c.Restart(victim); err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: restarted %s after %d Graph calls", at(), c.NodeName(victim), len(r.gs.Calls()))
			r.settle(want, 120*time.Second)
			t.Logf("%s: settled", at())
		})
	}
}

// waitPick waits until pick names a node.
func waitPick(ctx context.Context, t *testing.T, pick func() int) int {
	t.Helper()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if i := pick(); i >= 0 {
			return i
		}
		select {
		case <-ctx.Done():
			t.Fatal("no node to stop: the cluster has no leaders")
		case <-tick.C:
		}
	}
}

// rolesOf says what node i leads, for the log.
func rolesOf(c *devservertest.Cluster, i int) string {
	names := wire.Names{}
	var roles []string
	if c.MetaLeader() == i {
		roles = append(roles, "meta leader")
	}
	for _, s := range []string{names.JobsStream(), names.ResultsStream(), "KV_" + names.KeysBucket(), "KV_" + names.LimitsBucket()} {
		if c.StreamLeader(devservertest.Account, s) == i {
			roles = append(roles, s+" leader")
		}
	}
	if c.ConsumerLeader(devservertest.Account, names.JobsStream(), queue.ConsumerName) == i {
		roles = append(roles, "jobs consumer leader")
	}
	if len(roles) == 0 {
		return "leads nothing"
	}
	return strings.Join(roles, ", ")
}
