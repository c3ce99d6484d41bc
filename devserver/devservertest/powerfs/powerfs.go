// Package powerfs is a FUSE file system for tests that can lose power: it
// passes every operation through to a backing directory, except that a
// file's data written since its last fsync (its writes and truncations)
// is held in the file system's memory, as the page cache of a machine
// holds it. PowerLoss drops all of that and unmounts: the backing
// directory then holds exactly what was fsynced, which is what a disk
// holds after a power cut. Mounting a fresh FS on it shows a program
// restarted after the cut what it would find.
//
// A SIGKILLed process cannot show that difference: its unsynced writes
// sit in the page cache, which the kernel writes out anyway. Writes made
// through a file opened with O_SYNC or O_DSYNC count as synced when they
// return, as fsync's do.
//
// Only data is volatile. Metadata operations (creating, renaming and
// removing files and directories) reach the backing directory at once,
// as if every one were followed by an fsync of its directory: the loss
// modelled is the lesser one, and a program that is safe without
// directory fsyncs may still be unsafe on a real disk. Hard links to a
// file with unsynced data are not supported (each name would keep its
// own unsynced data).
//
// Mounting needs /dev/fuse and the privilege to mount (root, or
// CAP_SYS_ADMIN): the mount is made with the mount system call, no
// fusermount binary is used. Mount reports ErrUnsupported when the
// machine offers neither.
//
// The package is for tests only, and no binary may link it.
package powerfs

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// ErrUnsupported reports that this machine cannot mount a FUSE file
// system for this process: no /dev/fuse, or no privilege to mount.
var ErrUnsupported = errors.New("powerfs: FUSE mounts are not possible here")

// FS is a mounted power-loss file system. It is safe for concurrent use.
type FS struct {
	dir, backing string
	server       *fuse.Server

	// mu is held for reading by every operation on unsynced data, and
	// for writing by PowerLoss, so that the loss falls between
	// operations, never inside one.
	mu   sync.RWMutex
	lost bool // guarded by mu

	dirtyMu sync.Mutex
	dirty   map[*node]struct{} // nodes with pending changes; guarded by dirtyMu

	stats Stats // guarded by dirtyMu
}

// Stats counts what passed through an FS.
type Stats struct {
	// Written is the number of bytes written to files.
	Written int64
	// Syncs is the number of fsyncs (and O_SYNC writes) of files that
	// had unsynced changes.
	Syncs int64
	// LostFiles and LostBytes are how many files had unsynced changes
	// when the power went, and how many bytes of written pages those
	// held; zero before PowerLoss.
	LostFiles int
	LostBytes int64
}

func (s Stats) String() string {
	return fmt.Sprintf("%d bytes written, %d syncs, unsynced data of %d files (%d bytes) lost", s.Written, s.Syncs, s.LostFiles, s.LostBytes)
}

// Mount mounts an FS on the directory dir, passing through to the
// directory backing; both must exist. The backing directory must not be
// changed by anything else while the FS is mounted.
func Mount(dir, backing string) (*FS, error) {
	if err := mountable(); err != nil {
		return nil, err
	}
	loop, err := fs.NewLoopbackRoot(backing)
	if err != nil {
		return nil, fmt.Errorf("powerfs: %w", err)
	}
	pfs := &FS{dir: dir, backing: backing, dirty: make(map[*node]struct{})}
	root := &node{LoopbackNode: loop.(*fs.LoopbackNode), fs: pfs}
	// Attributes may be cached briefly: every answer carries the size
	// the writers see, unsynced changes included.
	second := time.Second
	// go-fuse opens /dev/fuse without O_CLOEXEC: a child started
	// meanwhile would inherit the connection and keep the mount alive
	// after this process died, its requests answered by no one. Holding
	// ForkLock keeps children from starting until the descriptor is
	// marked.
	syscall.ForkLock.RLock()
	defer syscall.ForkLock.RUnlock()
	server, err := fs.Mount(dir, root, &fs.Options{
		MountOptions: fuse.MountOptions{
			DirectMountStrict:  true,
			FsName:             backing,
			Name:               "powerfs",
			DisableXAttrs:      true,
			DisableReadDirPlus: true,
		},
		EntryTimeout: &second,
		AttrTimeout:  &second,
	})
	if err != nil {
		if errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.ENODEV) {
			return nil, fmt.Errorf("%w: mount %s: %v", ErrUnsupported, dir, err)
		}
		return nil, fmt.Errorf("powerfs: mount %s: %w", dir, err)
	}
	pfs.server = server
	if err := closeFUSEOnExec(); err != nil {
		_ = server.Unmount()
		return nil, err
	}
	return pfs, nil
}

// closeFUSEOnExec marks every descriptor of /dev/fuse this process holds
// close-on-exec.
func closeFUSEOnExec() error {
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return fmt.Errorf("powerfs: %w", err)
	}
	for _, e := range fds {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if target, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && target == "/dev/fuse" {
			syscall.CloseOnExec(fd)
		}
	}
	return nil
}

// mountable checks that /dev/fuse can be opened, so that a machine
// without it is told apart from a failing mount.
func mountable() error {
	f, err := os.OpenFile("/dev/fuse", os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUnsupported, err)
	}
	return f.Close()
}

// Dir is where the FS is mounted.
func (pfs *FS) Dir() string { return pfs.dir }

// Stats returns the counts so far.
func (pfs *FS) Stats() Stats {
	pfs.dirtyMu.Lock()
	defer pfs.dirtyMu.Unlock()
	return pfs.stats
}

// PowerLoss drops every file's unsynced changes, as a power cut does,
// and unmounts the FS. Operations after it fail with EIO. Stop the
// programs using the FS first (SIGKILL is the point): unmounting waits
// for their files to close, and a program still running would see its
// files vanish, which a power cut does not show it. It returns the
// counts, lost data included.
func (pfs *FS) PowerLoss() (Stats, error) {
	pfs.mu.Lock()
	pfs.lost = true
	var files int
	var bytes int64
	for _, n := range pfs.dirtyNodes() {
		n.mu.Lock()
		if n.p != nil {
			files++
			bytes += n.p.dirtyBytes()
			n.p = nil
		}
		n.mu.Unlock()
	}
	pfs.dirtyMu.Lock()
	clear(pfs.dirty)
	pfs.stats.LostFiles += files
	pfs.stats.LostBytes += bytes
	stats := pfs.stats
	pfs.dirtyMu.Unlock()
	pfs.mu.Unlock()
	return stats, pfs.unmount()
}

// Unmount writes every file's unsynced changes to the backing directory,
// as an orderly shutdown of a machine does, and unmounts the FS.
// Unmounting twice, or after PowerLoss, does nothing.
func (pfs *FS) Unmount() error {
	pfs.mu.Lock()
	var errs []error
	if !pfs.lost {
		for _, n := range pfs.dirtyNodes() {
			errs = append(errs, n.flushByPath())
		}
	}
	pfs.mu.Unlock()
	errs = append(errs, pfs.unmount())
	return errors.Join(errs...)
}

// unmount unmounts the FS, once the programs using it have closed their
// files.
func (pfs *FS) unmount() error {
	if err := pfs.server.Unmount(); err != nil {
		return fmt.Errorf("powerfs: unmount %s: %w", pfs.dir, err)
	}
	return nil
}

// dirtyNodes lists the nodes with pending changes.
func (pfs *FS) dirtyNodes() []*node {
	pfs.dirtyMu.Lock()
	defer pfs.dirtyMu.Unlock()
	nodes := make([]*node, 0, len(pfs.dirty))
	for n := range pfs.dirty {
		nodes = append(nodes, n)
	}
	return nodes
}

// markDirty records that n has pending changes; n.mu is held.
func (pfs *FS) markDirty(n *node) {
	pfs.dirtyMu.Lock()
	pfs.dirty[n] = struct{}{}
	pfs.dirtyMu.Unlock()
}

// markClean records that n's changes were synced (or dropped); n.mu is
// held.
func (pfs *FS) markClean(n *node, synced bool) {
	pfs.dirtyMu.Lock()
	delete(pfs.dirty, n)
	if synced {
		pfs.stats.Syncs++
	}
	pfs.dirtyMu.Unlock()
}

func (pfs *FS) countWrite(n int) {
	pfs.dirtyMu.Lock()
	pfs.stats.Written += int64(n)
	pfs.dirtyMu.Unlock()
}

// Start mounts an FS on dir over backing for a test, skipping the test
// (with the reason) where FUSE mounts are not possible, and unmounts it
// when the test ends. Register the cleanups of the programs using it
// after calling Start, so that they stop first.
func Start(tb testing.TB, dir, backing string) *FS {
	tb.Helper()
	pfs, err := Mount(dir, backing)
	if errors.Is(err, ErrUnsupported) {
		tb.Skip(err)
	}
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := pfs.Unmount(); err != nil {
			tb.Error(err)
		}
	})
	return pfs
}
