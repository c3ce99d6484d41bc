package powerfs

import (
	"io"
	"os"
)

// pageSize is the unit in which unsynced data is kept: a write loads the
// pages it touches from the backing file once, and an fsync writes the
// dirty pages back.
const pageSize = 4096

// pending is what a file's writers have done to it since its last fsync,
// which the backing file does not hold yet: the pages they wrote and the
// truncations they made. Reading the file means reading the backing file
// through it. It is not safe for concurrent use (its node's lock guards
// it).
type pending struct {
	// base is the backing file's size: it does not change while the file
	// has pending changes, since only flush writes to it.
	base int64
	// trunc is the smallest size the file was truncated to: the backing
	// file's bytes from trunc on are gone (they read as zeros).
	trunc int64
	// size is the file's size as its writers see it; trunc <= size.
	size int64
	// pages are the pages written since the last fsync, each pageSize
	// long, by index.
	pages map[int64][]byte
}

func newPending(base int64) *pending {
	return &pending{base: base, trunc: base, size: base, pages: make(map[int64][]byte)}
}

// readBacking reads the backing file's bytes at off into buf, up to trunc,
// and zeros the rest.
func (p *pending) readBacking(f *os.File, buf []byte, off int64) error {
	n := 0
	if off < p.trunc {
		n = int(min(int64(len(buf)), p.trunc-off))
		got, err := f.ReadAt(buf[:n], off)
		if err != nil && err != io.EOF {
			return err
		}
		n = got
	}
	clear(buf[n:])
	return nil
}

// page returns page i for writing, loading it from the backing file the
// first time.
func (p *pending) page(f *os.File, i int64) ([]byte, error) {
	if pg, ok := p.pages[i]; ok {
		return pg, nil
	}
	pg := make([]byte, pageSize)
	if err := p.readBacking(f, pg, i*pageSize); err != nil {
		return nil, err
	}
	p.pages[i] = pg
	return pg, nil
}

// write records data written at off.
func (p *pending) write(f *os.File, data []byte, off int64) error {
	for done := 0; done < len(data); {
		at := off + int64(done)
		pg, err := p.page(f, at/pageSize)
		if err != nil {
			return err
		}
		done += copy(pg[at%pageSize:], data[done:])
	}
	p.size = max(p.size, off+int64(len(data)))
	return nil
}

// read reads the file's bytes at off into buf and returns how many there
// are (fewer than len(buf) at the end of the file).
func (p *pending) read(f *os.File, buf []byte, off int64) (int, error) {
	if off >= p.size {
		return 0, nil
	}
	buf = buf[:min(int64(len(buf)), p.size-off)]
	if err := p.readBacking(f, buf, off); err != nil {
		return 0, err
	}
	for i := off / pageSize; i*pageSize < off+int64(len(buf)); i++ {
		pg, ok := p.pages[i]
		if !ok {
			continue
		}
		from := max(i*pageSize, off)
		copy(buf[from-off:], pg[from-i*pageSize:])
	}
	return len(buf), nil
}

// truncate records the file cut (or extended with zeros) to size.
func (p *pending) truncate(size int64) {
	if size < p.size {
		for i, pg := range p.pages {
			switch {
			case i*pageSize >= size:
				delete(p.pages, i)
			case (i+1)*pageSize > size:
				clear(pg[size-i*pageSize:])
			}
		}
		p.trunc = min(p.trunc, size)
	}
	p.size = size
}

// flush writes the pending changes to the backing file f. The backing
// file is not fsynced: it stands for the disk, which this machine's
// page cache does not lose.
func (p *pending) flush(f *os.File) error {
	if p.trunc < p.base {
		if err := f.Truncate(p.trunc); err != nil {
			return err
		}
	}
	for i, pg := range p.pages {
		if _, err := f.WriteAt(pg[:min(pageSize, p.size-i*pageSize)], i*pageSize); err != nil {
			return err
		}
	}
	return f.Truncate(p.size)
}

// dirtyBytes is how much the pending changes hold: the bytes of the
// written pages within the file.
func (p *pending) dirtyBytes() int64 {
	var n int64
	for i := range p.pages {
		n += min(pageSize, p.size-i*pageSize)
	}
	return n
}
