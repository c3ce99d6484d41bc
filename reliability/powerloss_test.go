package reliability_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/conf"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/recoverpasscode/recoverpasscode/devserver/devservertest"
	"github.com/recoverpasscode/recoverpasscode/graph/graphsim"
	"github.com/recoverpasscode/recoverpasscode/reliability"
	"github.com/recoverpasscode/recoverpasscode/wire"
)

// powerOff is how long the whole cluster stays dead in
// TestClusterPowerLoss.
const powerOff = 2 * time.Second

// deployConfig is the configuration the three production nodes share.
var deployConfig = filepath.Join("..", "deploy", "nats", "cluster.conf")

// TestClusterPowerLoss cuts the power of a three-node JetStream cluster
// mid-batch and looks at what its disks kept. Each node is a separate
// nats-server process storing on its own powerfs file system, which holds
// every write not yet fsynced in memory, as a page cache does: the cut is
// a SIGKILL of every node at once (no shutdown, nothing flushed by the
// server) followed by the loss of every node's unsynced writes, so the
// disks keep exactly what was fsynced.
//
// With the fsync setting of the deploy configuration, every result, audit
// event, idempotency record and unanswered job acknowledged before the
// cut must be on the disks, and the cluster, restarted on them, must lose
// none of them: every job ends with exactly one result, no record is back
// at an older revision, no audit event is missing. With the server's
// default (an fsync every two minutes) the same cut must leave
// acknowledged writes on no disk at all: that half proves the emulation
// tells the two settings apart, so the first half fails when
// sync_interval is removed from the deploy files.
func TestClusterPowerLoss(t *testing.T) {
	t.Parallel()
	t.Run("deploy_config", func(t *testing.T) {
		sync := deploySync(t)
		r, c, jobs, want, before, lost := powerCut(t, sync, false)
		if err := lost.Err(); err != nil {
			// A cluster restarted on such disks answers for none of its
			// streams: there is nothing more to learn from it.
			t.Fatalf("with sync_interval %q, acknowledged before the power cut and on no disk after it:\n%v", sync, err)
		}
		if err := c.RestartAll(); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
		defer cancel()
		r.submit(ctx, "batch", jobs[200:])
		r.settle(want, 2*time.Minute)
		checkAuditComplete(t, r, len(want))
		if err := before.missingFrom(r.snapshot(ctx)); err != nil {
			t.Errorf("acknowledged before the power cut, missing after the restart (sync_interval %q):\n%v", sync, err)
		}
	})
	t.Run("server_default", func(t *testing.T) {
		_, _, _, _, _, lost := powerCut(t, "", true)
		if lost.Err() == nil {
			t.Fatal("with the server's default fsync policy every acknowledged write survived the power cut: the cut did not drop unsynced writes")
		}
	})
}

// powerCut runs 200 jobs through two workers on a process cluster whose
// nodes store on powerfs, with JetStream's sync_interval set to sync, cuts
// the power of every node once 60 Graph calls are done, and reads what
// the disks kept. The workers run in the test process and ride the cut
// out, or, when workersDie, are processes that the cut kills too (a cluster
// that lost its data cannot let them drain). It returns the rig, the
// cluster (all nodes down, their file systems mounted again over the
// disks), the batch of 300 jobs (the last 100 not yet submitted) and what
// they must end as, what the cluster held before the cut, and what of
// that no disk holds.
func powerCut(t *testing.T, sync string, workersDie bool) (*rig, *devservertest.ProcessCluster, []wire.Job, []reliability.Expected, stored, diskLoss) {
	cfg := devservertest.ClusterConfig{Size: 3, Dir: filepath.Join(t.TempDir(), "nodes"), Sync: sync}
	disks := mountDisks(t, cfg)
	c := devservertest.StartProcessCluster(t, cfg)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	r := newRig(t, graphsim.Config{Latency: 100 * time.Millisecond}, c.URL(), 3)
	var procs []*proc
	for _, name := range []string{"power-a", "power-b"} {
		wcfg := r.config(name)
		wcfg.Concurrency = 4
		if workersDie {
			procs = append(procs, r.startProcess(wcfg, ""))
			continue
		}
		r.startWorker(wcfg)
	}
	jobs, want := batch("power", 0, 300, 10)
	r.submit(ctx, "batch", jobs[:200])
	r.waitCalls(ctx, 60)

	before := r.snapshot(ctx)
	c.KillAll()
	for _, p := range procs {
		p.kill()
	}
	down := len(r.gs.Calls())
	fsStats := disks.powerLoss()
	lost := disks.scan(r.names.KeysBucket(), before, jobs[:200])
	t.Logf("power cut to all %d nodes (sync_interval %q) after %d Graph calls; stored before: %s; on no disk after: %s", c.Size(), sync, down, before, lost)
	t.Logf("file systems: %s", fsStats)
	<-time.After(powerOff) // the fault itself: no server at all
	disks.mount()
	return r, c, jobs, want, before, lost
}

// deploySync is the JetStream sync_interval of deploy/nats/cluster.conf
// ("" when it sets none), read with nats-server's own parser. Its include
// of the accounts is left out: their passwords come from the environment,
// and the test's cluster runs without accounts.
func deploySync(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile(deployConfig)
	if err != nil {
		t.Fatal(err)
	}
	var kept strings.Builder
	for line := range strings.Lines(string(data)) {
		if !strings.HasPrefix(strings.TrimSpace(line), "include ") {
			kept.WriteString(line)
		}
	}
	m, err := conf.Parse(kept.String())
	if err != nil {
		t.Fatalf("%s: %v", deployConfig, err)
	}
	js, _ := m["jetstream"].(map[string]any)
	for _, name := range []string{"sync_interval", "sync"} {
		if v, ok := js[name]; ok {
			return fmt.Sprint(v)
		}
	}
	return ""
}

// stored is what the cluster holds at one moment: the message ids of the
// results and audit events, and the revision of each idempotency record.
type stored struct {
	results, audit map[string]bool
	keys           map[string]uint64
}

func (s stored) String() string {
	return fmt.Sprintf("%d results, %d audit events, %d idempotency records", len(s.results), len(s.audit), len(s.keys))
}

// snapshot reads what the cluster holds now. Whatever a read returns was
// committed by the stream's leader, so its publisher got (or was about to
// get) its acknowledgement. A read that fails (a leader moving) is tried
// again.
func (r *rig) snapshot(ctx context.Context) stored {
	r.t.Helper()
	var s stored
	var err error
	for try := 0; try < 5; try++ {
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		s, err = r.readStored(sctx)
		cancel()
		if err == nil {
			break
		}
		<-time.After(time.Second)
	}
	if err != nil {
		r.t.Fatal(err)
	}
	if len(s.results) == 0 || len(s.audit) == 0 || len(s.keys) == 0 {
		r.t.Fatalf("nothing to lose: the cluster holds %s", s)
	}
	return s
}

// readStored reads the stored results, audit events and idempotency
// records once.
func (r *rig) readStored(ctx context.Context) (stored, error) {
	s := stored{keys: make(map[string]uint64)}
	var err error
	if s.results, err = msgIDs(ctx, r.js, r.names.ResultsStream()); err != nil {
		return s, err
	}
	if s.audit, err = msgIDs(ctx, r.js, r.names.AuditStream()); err != nil {
		return s, err
	}
	kv, err := r.js.KeyValue(ctx, r.names.KeysBucket())
	if err != nil {
		return s, err
	}
	keys, err := kv.ListKeys(ctx)
	if err != nil {
		return s, err
	}
	for key := range keys.Keys() {
		entry, err := kv.Get(ctx, key)
		if err != nil {
			return s, fmt.Errorf("idempotency record %s: %w", key, err)
		}
		s.keys[key] = entry.Revision()
	}
	return s, nil
}

// missingFrom lists what s holds and later does not: a result or audit
// event gone, an idempotency record gone or back at an older revision.
func (s stored) missingFrom(later stored) error {
	var errs []error
	for _, kind := range []struct {
		name    string
		was, is map[string]bool
	}{{"result", s.results, later.results}, {"audit event", s.audit, later.audit}} {
		var gone []string
		for id := range kind.was {
			if !kind.is[id] {
				gone = append(gone, id)
			}
		}
		slices.Sort(gone)
		if len(gone) > 0 {
			errs = append(errs, fmt.Errorf("%d %ss: %s", len(gone), kind.name, strings.Join(gone, ", ")))
		}
	}
	var older []string
	for key, rev := range s.keys {
		if now, ok := later.keys[key]; !ok || now < rev {
			older = append(older, fmt.Sprintf("%s (revision %d, now %d)", key, rev, now))
		}
	}
	slices.Sort(older)
	if len(older) > 0 {
		errs = append(errs, fmt.Errorf("%d idempotency records gone or older: %s", len(older), strings.Join(older, ", ")))
	}
	return errors.Join(errs...)
}

// msgIDs reads the Nats-Msg-Id of every message in stream, up to its last
// sequence when the read starts.
func msgIDs(ctx context.Context, js jetstream.JetStream, stream string) (map[string]bool, error) {
	ids := make(map[string]bool)
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", stream, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", stream, err)
	}
	if info.State.Msgs == 0 {
		return ids, nil
	}
	cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", stream, err)
	}
	for {
		batch, err := cons.Fetch(1000, jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", stream, err)
		}
		got := 0
		for msg := range batch.Messages() {
			got++
			ids[msg.Headers().Get(jetstream.MsgIDHeader)] = true
			meta, err := msg.Metadata()
			if err != nil {
				return nil, fmt.Errorf("%s: %w", stream, err)
			}
			if meta.Sequence.Stream >= info.State.LastSeq {
				return ids, nil
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			return nil, fmt.Errorf("%s: %w", stream, err)
		}
		if got == 0 {
			return nil, fmt.Errorf("%s: no message after waiting, before sequence %d", stream, info.State.LastSeq)
		}
	}
}
