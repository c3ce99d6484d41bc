package powerfs

import (
	"bytes"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

// TestPendingMatchesAFile runs random writes, truncations, reads and
// flushes through pending and through a plain byte slice, and compares
// what a read sees, what a flush leaves in the backing file, and what a
// loss (dropping pending) leaves there.
func TestPendingMatchesAFile(t *testing.T) {
	for seed := range uint64(8) {
		rng := rand.New(rand.NewPCG(seed, seed))
		f, err := os.Create(filepath.Join(t.TempDir(), "f"))
		if err != nil {
			t.Fatal(err)
		}
		var file, disk []byte // what the writers see, what was synced
		var p *pending
		for op := range 300 {
			if p == nil {
				p = newPending(int64(len(disk)))
			}
			off := rng.Int64N(3 * pageSize)
			switch rng.IntN(10) {
			case 0, 1, 2, 3:
				data := make([]byte, rng.IntN(2*pageSize))
				for i := range data {
					data[i] = byte(rng.Uint32())
				}
				if err := p.write(f, data, off); err != nil {
					t.Fatal(err)
				}
				if end := int(off) + len(data); end > len(file) {
					file = append(file, make([]byte, end-len(file))...)
				}
				copy(file[off:], data)
			case 4:
				p.truncate(off)
				if int(off) < len(file) {
					file = file[:off]
				} else {
					file = append(file, make([]byte, int(off)-len(file))...)
				}
			case 5, 6, 7:
				buf := make([]byte, rng.IntN(3*pageSize))
				n, err := p.read(f, buf, off)
				if err != nil {
					t.Fatal(err)
				}
				want := []byte{}
				if int(off) < len(file) {
					want = file[off:min(len(file), int(off)+len(buf))]
				}
				if !bytes.Equal(buf[:n], want) {
					t.Fatalf("seed %d, op %d: read %d bytes at %d differs from the file's", seed, op, len(buf), off)
				}
			case 8:
				if err := p.flush(f); err != nil {
					t.Fatal(err)
				}
				p, disk = nil, bytes.Clone(file)
			case 9:
				p, file = nil, bytes.Clone(disk)
			}
			if p != nil && p.size != int64(len(file)) {
				t.Fatalf("seed %d, op %d: size %d, want %d", seed, op, p.size, len(file))
			}
			got, err := os.ReadFile(f.Name())
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, disk) {
				t.Fatalf("seed %d, op %d: the backing file holds %d bytes other than the %d synced", seed, op, len(got), len(disk))
			}
		}
		f.Close()
	}
}
