package powerfs

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// node is a file or directory of an FS: the loopback's, with the data
// operations going through the file's pending changes.
type node struct {
	*fs.LoopbackNode
	fs *FS

	mu sync.Mutex
	p  *pending // unsynced changes, nil when there are none; guarded by mu
}

var (
	_ fs.NodeWrapChilder = (*node)(nil)
	_ fs.NodeLookuper    = (*node)(nil)
	_ fs.NodeCreater     = (*node)(nil)
	_ fs.NodeOpener      = (*node)(nil)
	_ fs.NodeGetattrer   = (*node)(nil)
	_ fs.NodeSetattrer   = (*node)(nil)
	_ fs.NodeFsyncer     = (*node)(nil)
	_ fs.NodeUnlinker    = (*node)(nil)
	_ fs.NodeRenamer     = (*node)(nil)
)

// WrapChild makes every node the loopback creates one of ours.
func (n *node) WrapChild(ctx context.Context, ops fs.InodeEmbedder) fs.InodeEmbedder {
	return &node{LoopbackNode: ops.(*fs.LoopbackNode), fs: n.fs}
}

// path is the node's path in the backing directory.
func (n *node) path() string {
	return filepath.Join(n.RootData.Path, n.Path(nil))
}

// patch sets the size in a to the one the writers see.
func (n *node) patch(a *fuse.Attr) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.p != nil {
		a.Size = uint64(n.p.size)
		a.Blocks = (a.Size + 511) / 512
	}
}

// Lookup is the loopback's, with the size the writers see.
func (n *node) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	ch, errno := n.LoopbackNode.Lookup(ctx, name, out)
	if errno == 0 {
		if c, ok := ch.Operations().(*node); ok {
			c.patch(&out.Attr)
		}
	}
	return ch, errno
}

// openFlags are the flags for opening a backing file: always read-write
// (fsync must be able to write back what a read-only handle's file has
// pending), and without the flags the FS carries out itself.
func openFlags(flags uint32) int {
	const own = syscall.O_ACCMODE | syscall.O_APPEND | syscall.O_TRUNC | syscall.O_SYNC | syscall.O_DSYNC | fuse.FMODE_EXEC
	return int(flags&^own) | syscall.O_RDWR
}

// newHandle is the handle of a file opened with flags, whose backing file
// is f.
func (n *node) newHandle(f *os.File, flags uint32) *handle {
	return &handle{
		n: n, f: f,
		write:  flags&syscall.O_ACCMODE != syscall.O_RDONLY,
		synced: flags&syscall.O_DSYNC != 0,
	}
}

// Create creates the file in the backing directory at once (metadata is
// not volatile); a truncation of an existing file is.
func (n *node) Create(ctx context.Context, name string, flags, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	if n.fs.isLost() {
		return nil, nil, 0, syscall.EIO
	}
	f, err := os.OpenFile(filepath.Join(n.path(), name), openFlags(flags)|os.O_CREATE, os.FileMode(mode))
	if err != nil {
		return nil, nil, 0, fs.ToErrno(err)
	}
	ch, errno := n.Lookup(ctx, name, out)
	if errno != 0 {
		f.Close()
		return nil, nil, 0, errno
	}
	c := ch.Operations().(*node)
	h := c.newHandle(f, flags)
	if flags&syscall.O_TRUNC != 0 {
		if errno := h.truncate(0); errno != 0 {
			f.Close()
			return nil, nil, 0, errno
		}
		c.patch(&out.Attr)
	}
	return ch, h, 0, 0
}

// Open opens the backing file; O_TRUNC is volatile, as any truncation.
func (n *node) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	if n.fs.isLost() {
		return nil, 0, syscall.EIO
	}
	f, err := os.OpenFile(n.path(), openFlags(flags), 0)
	if err != nil {
		return nil, 0, fs.ToErrno(err)
	}
	h := n.newHandle(f, flags)
	if flags&syscall.O_TRUNC != 0 {
		if errno := h.truncate(0); errno != 0 {
			f.Close()
			return nil, 0, errno
		}
	}
	return h, 0, 0
}

// Getattr is the loopback's, with the size the writers see.
func (n *node) Getattr(ctx context.Context, f fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	if errno := n.LoopbackNode.Getattr(ctx, f, out); errno != 0 {
		return errno
	}
	n.patch(&out.Attr)
	return 0
}

// Setattr is the loopback's, but a change of size is volatile.
func (n *node) Setattr(ctx context.Context, f fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if size, ok := in.GetSize(); ok {
		h, ok := f.(*handle)
		if !ok {
			backing, err := os.OpenFile(n.path(), os.O_RDWR, 0)
			if err != nil {
				return fs.ToErrno(err)
			}
			defer backing.Close()
			h = n.newHandle(backing, syscall.O_RDWR)
		}
		if errno := h.truncate(int64(size)); errno != 0 {
			return errno
		}
		in.Valid &^= fuse.FATTR_SIZE
	}
	if errno := n.LoopbackNode.Setattr(ctx, f, in, out); errno != 0 {
		return errno
	}
	n.patch(&out.Attr)
	return 0
}

// Fsync writes the file's pending changes to the backing file. A
// directory's fsync does nothing: its changes were never volatile.
func (n *node) Fsync(ctx context.Context, f fs.FileHandle, flags uint32) syscall.Errno {
	h, ok := f.(*handle)
	if !ok {
		return 0
	}
	return h.sync()
}

// Unlink removes the file, and with it its unsynced data.
func (n *node) Unlink(ctx context.Context, name string) syscall.Errno {
	child := n.GetChild(name)
	errno := n.LoopbackNode.Unlink(ctx, name)
	if errno == 0 && child != nil {
		if c, ok := child.Operations().(*node); ok {
			c.drop()
		}
	}
	return errno
}

// Rename renames; a file it replaces goes with its unsynced data.
func (n *node) Rename(ctx context.Context, name string, newParent fs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	source, target := n.GetChild(name), newParent.EmbeddedInode().GetChild(newName)
	errno := n.LoopbackNode.Rename(ctx, name, newParent, newName, flags)
	if errno == 0 && target != nil && target != source && flags&unix.RENAME_EXCHANGE == 0 {
		if c, ok := target.Operations().(*node); ok {
			c.drop()
		}
	}
	return errno
}

// drop forgets the node's pending changes: its file is gone.
func (n *node) drop() {
	n.fs.mu.RLock()
	defer n.fs.mu.RUnlock()
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.p != nil {
		n.p = nil
		n.fs.markClean(n, false)
	}
}

// flushByPath writes the node's pending changes to its backing file,
// found by its path; the FS is locked. A file removed meanwhile has
// nothing left to write.
func (n *node) flushByPath() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.p == nil {
		return nil
	}
	f, err := os.OpenFile(n.path(), os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("powerfs: %w", err)
	}
	defer f.Close()
	if err := n.p.flush(f); err != nil {
		return fmt.Errorf("powerfs: %w", err)
	}
	n.p = nil
	n.fs.markClean(n, true)
	return nil
}

// handle is an open file of an FS.
type handle struct {
	n      *node
	f      *os.File // the backing file, open read-write
	write  bool     // opened for writing
	synced bool     // opened with O_SYNC or O_DSYNC: every write is synced
}

var (
	_ fs.FileReader    = (*handle)(nil)
	_ fs.FileWriter    = (*handle)(nil)
	_ fs.FileGetattrer = (*handle)(nil)
	_ fs.FileFlusher   = (*handle)(nil)
	_ fs.FileReleaser  = (*handle)(nil)
)

// locked runs do with the FS not lost and the node locked, starting the
// node's pending changes when dirty is set; do sees the node's pending
// changes, nil when there are none.
func (h *handle) locked(dirty bool, do func(p *pending) error) syscall.Errno {
	pfs, n := h.n.fs, h.n
	pfs.mu.RLock()
	defer pfs.mu.RUnlock()
	if pfs.lost {
		return syscall.EIO
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.p == nil && dirty {
		info, err := h.f.Stat()
		if err != nil {
			return fs.ToErrno(err)
		}
		n.p = newPending(info.Size())
		pfs.markDirty(n)
	}
	if err := do(n.p); err != nil {
		return fs.ToErrno(err)
	}
	return 0
}

// Read reads the file as its writers left it.
func (h *handle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	var got int
	errno := h.locked(false, func(p *pending) error {
		if p != nil {
			var err error
			got, err = p.read(h.f, dest, off)
			return err
		}
		var err error
		got, err = h.f.ReadAt(dest, off)
		if err == io.EOF {
			err = nil
		}
		return err
	})
	if errno != 0 {
		return nil, errno
	}
	return fuse.ReadResultData(dest[:got]), 0
}

// Write keeps data with the file's pending changes, or writes it through
// on a file opened with O_SYNC or O_DSYNC.
func (h *handle) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	if !h.write {
		return 0, syscall.EBADF
	}
	errno := h.locked(true, func(p *pending) error {
		if err := p.write(h.f, data, off); err != nil {
			return err
		}
		if h.synced {
			return h.flush(p)
		}
		return nil
	})
	if errno != 0 {
		return 0, errno
	}
	h.n.fs.countWrite(len(data))
	return uint32(len(data)), 0
}

// truncate records the file cut (or extended) to size.
func (h *handle) truncate(size int64) syscall.Errno {
	return h.locked(true, func(p *pending) error {
		p.truncate(size)
		if h.synced {
			return h.flush(p)
		}
		return nil
	})
}

// sync writes the file's pending changes to the backing file.
func (h *handle) sync() syscall.Errno {
	return h.locked(false, func(p *pending) error {
		if p == nil {
			return nil
		}
		return h.flush(p)
	})
}

// flush writes p to the backing file and ends it; the node is locked.
func (h *handle) flush(p *pending) error {
	if err := p.flush(h.f); err != nil {
		return err
	}
	h.n.p = nil
	h.n.fs.markClean(h.n, true)
	return nil
}

// Getattr is the backing file's, with the size the writers see.
func (h *handle) Getattr(ctx context.Context, out *fuse.AttrOut) syscall.Errno {
	var st syscall.Stat_t
	if err := syscall.Fstat(int(h.f.Fd()), &st); err != nil {
		return fs.ToErrno(err)
	}
	out.FromStat(&st)
	h.n.patch(&out.Attr)
	return 0
}

// Flush does nothing: closing a file syncs nothing.
func (h *handle) Flush(ctx context.Context) syscall.Errno { return 0 }

// Release closes the backing file; the file's pending changes stay.
func (h *handle) Release(ctx context.Context) syscall.Errno {
	return fs.ToErrno(h.f.Close())
}

func (pfs *FS) isLost() bool {
	pfs.mu.RLock()
	defer pfs.mu.RUnlock()
	return pfs.lost
}
