package reliability_test

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/recoverpasscode/recoverpasscode/devserver/devservertest"
	"github.com/recoverpasscode/recoverpasscode/devserver/devservertest/powerfs"
	"github.com/recoverpasscode/recoverpasscode/wire"
)

// disks are the nodes' powerfs file systems, mounted on their store
// directories over backing directories that play their disks.
type disks struct {
	t   *testing.T
	cfg devservertest.ClusterConfig
	fss []*powerfs.FS
}

// mountDisks mounts a powerfs on the store directory of every node of
// cfg, and unmounts them when the test ends, after the cluster's own
// cleanup has stopped the nodes. It skips the test where FUSE mounts are
// not possible.
func mountDisks(t *testing.T, cfg devservertest.ClusterConfig) *disks {
	t.Helper()
	d := &disks{t: t, cfg: cfg}
	for i := range d.cfg.Size {
		for _, dir := range []string{cfg.NodeDir(i), d.backing(i)} {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
		}
	}
	t.Cleanup(func() {
		for _, fs := range d.fss {
			if err := fs.Unmount(); err != nil {
				t.Error(err)
			}
		}
	})
	d.mount()
	return d
}

// backing is node i's disk.
func (d *disks) backing(i int) string { return d.cfg.NodeDir(i) + ".disk" }

// mount mounts every node's file system over its disk.
func (d *disks) mount() {
	d.t.Helper()
	d.fss = nil
	for i := range d.cfg.Size {
		fs, err := powerfs.Mount(d.cfg.NodeDir(i), d.backing(i))
		if errors.Is(err, powerfs.ErrUnsupported) {
			d.t.Skip(err)
		}
		if err != nil {
			d.t.Fatal(err)
		}
		d.fss = append(d.fss, fs)
	}
}

// powerLoss drops every node's unsynced writes and unmounts the file
// systems; the nodes must be dead already. It says what was lost.
func (d *disks) powerLoss() string {
	d.t.Helper()
	var lost []string
	for i, fs := range d.fss {
		stats, err := fs.PowerLoss()
		if err != nil {
			d.t.Fatal(err)
		}
		lost = append(lost, fmt.Sprintf("node %d: %s", i, stats))
	}
	return strings.Join(lost, "; ")
}

// diskLoss is what the cluster held before a power cut and no node's
// disk holds after it: results, audit events and idempotency records
// acknowledged, and jobs acknowledged whose result was not stored yet
// (neither the job nor its result is on a disk).
type diskLoss struct {
	results, audit, keys, jobs []string
	// items is how many were looked for; copies is the fewest disks any
	// of those found is on.
	items, copies int
	disks         int
}

func (l diskLoss) String() string {
	lost := len(l.results) + len(l.audit) + len(l.keys) + len(l.jobs)
	s := fmt.Sprintf("%d of %d acknowledged (%d results, %d audit events, %d idempotency records, %d unanswered jobs)",
		lost, l.items, len(l.results), len(l.audit), len(l.keys), len(l.jobs))
	if lost < l.items {
		s += fmt.Sprintf("; the others each on at least %d of the %d disks", l.copies, l.disks)
	}
	return s
}

// Err lists what was lost, nil when nothing was.
func (l diskLoss) Err() error {
	var errs []error
	for _, kind := range []struct {
		name string
		ids  []string
	}{{"results", l.results}, {"audit events", l.audit}, {"idempotency records", l.keys}, {"unanswered jobs", l.jobs}} {
		if len(kind.ids) > 0 {
			errs = append(errs, fmt.Errorf("%d %s: %s", len(kind.ids), kind.name, firstFew(kind.ids)))
		}
	}
	return errors.Join(errs...)
}

// firstFew lists the first few of ids.
func firstFew(ids []string) string {
	const few = 5
	if len(ids) <= few {
		return strings.Join(ids, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(ids[:few], ", "), len(ids)-few)
}

// msgIDHeader finds the Nats-Msg-Id of every message a store file holds:
// JetStream keeps messages (in the streams' blocks and the raft logs)
// uncompressed unless a stream asks otherwise, and none here does.
var msgIDHeader = regexp.MustCompile("Nats-Msg-Id: ?([^\r\n]+)\r\n")

// scan reads every node's disk and reports what of before, and of jobs
// (all acknowledged), none of them holds. An idempotency record is found
// by its key's subject in bucket.
func (d *disks) scan(bucket string, before stored, jobs []wire.Job) diskLoss {
	d.t.Helper()
	ids := make(map[string]int)  // Nats-Msg-Id → disks holding it
	keys := make(map[string]int) // idempotency key → disks holding it
	for i := range d.cfg.Size {
		data := readTree(d.t, d.backing(i))
		seen := make(map[string]bool)
		for _, m := range msgIDHeader.FindAllSubmatch(data, -1) {
			seen[string(m[1])] = true
		}
		for id := range seen {
			ids[id]++
		}
		for key := range before.keys {
			if bytes.Contains(data, []byte("$KV."+bucket+"."+key)) {
				keys[key]++
			}
		}
	}
	l := diskLoss{copies: d.cfg.Size + 1, disks: d.cfg.Size}
	found := func(on int) bool {
		l.items++
		if on > 0 {
			l.copies = min(l.copies, on)
		}
		return on > 0
	}
	for id := range before.results {
		if !found(ids[id]) {
			l.results = append(l.results, id)
		}
	}
	for id := range before.audit {
		if !found(ids[id]) {
			l.audit = append(l.audit, id)
		}
	}
	for key := range before.keys {
		if !found(keys[key]) {
			l.keys = append(l.keys, key)
		}
	}
	for _, j := range jobs {
		if before.results[j.ID+"/result"] {
			continue // counted with the results
		}
		if !found(ids[j.ID] + ids[j.ID+"/result"]) {
			l.jobs = append(l.jobs, j.ID)
		}
	}
	if l.copies == d.cfg.Size+1 {
		l.copies = 0 // none found
	}
	for _, s := range [][]string{l.results, l.audit, l.keys, l.jobs} {
		slices.Sort(s)
	}
	return l
}

// readTree reads every file under dir, one after the other.
func readTree(t *testing.T, dir string) []byte {
	t.Helper()
	var all []byte
	err := filepath.WalkDir(dir, func(path string, e fs.DirEntry, err error) error {
		if err != nil || !e.Type().IsRegular() {
			return err
		}
		data, err := os.ReadFile(path)
		all = append(append(all, data...), 0)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return all
}
