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
)

// powerOff is how long the whole cluster stays dead in
// TestClusterPowerLoss.
const powerOff = 2 * time.Second

// deployConfig is the configuration the three production nodes share.
var deployConfig = filepath.Join("..", "deploy", "nats", "cluster.conf")

// TestClusterPowerLoss kills every node of a three-node JetStream cluster
// at once, each a separate nats-server process ended with SIGKILL (no
// shutdown, nothing flushed by the server), mid-batch, and starts them
// again on the same stores, with the fsync setting of the deploy
// configuration. Nothing acknowledged before the loss may be missing
// after it: no job (each ends with exactly one result), no stored result,
// no idempotency record (nor an older revision of it), no audit event.
//
// A SIGKILL leaves the operating system's page cache to write what the
// servers had not synced, so this proves recovery from a crash of every
// process together (the raft logs replayed from the stores, with no
// healthy peer to catch up from), not that the writes were on the disk:
// see docs/reliability.md.
func TestClusterPowerLoss(t *testing.T) {
	t.Parallel()
	sync := deploySync(t)
	c := devservertest.StartProcessCluster(t, devservertest.ClusterConfig{Sync: sync})
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	r := newRig(t, graphsim.Config{Latency: 100 * time.Millisecond}, c.URL(), 3)
	for _, name := range []string{"power-a", "power-b"} {
		cfg := r.config(name)
		cfg.Concurrency = 4
		r.startWorker(cfg)
	}
	jobs, want := batch("power", 0, 300, 10)
	r.submit(ctx, "batch", jobs[:200])
	r.waitCalls(ctx, 60)

	before := r.snapshot(ctx)
	c.KillAll()
	down := len(r.gs.Calls())
	t.Logf("killed all %d nodes (sync_interval %q) after %d Graph calls; stored before: %s", c.Size(), sync, down, before)
	<-time.After(powerOff) // the fault itself: no server at all
	if err := c.RestartAll(); err != nil {
		t.Fatal(err)
	}
	r.submit(ctx, "batch", jobs[200:])
	r.settle(want, 2*time.Minute)
	checkAuditComplete(t, r, len(want))
	if err := before.missingFrom(r.snapshot(ctx)); err != nil {
		t.Errorf("acknowledged before the power loss, missing after it:\n%v", err)
	}
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
