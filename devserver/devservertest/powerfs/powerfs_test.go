package powerfs_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/recoverpasscode/recoverpasscode/devserver/devservertest/powerfs"
)

// mount mounts an FS on a new directory over a new backing directory.
func mount(t *testing.T) (*powerfs.FS, string) {
	t.Helper()
	root := t.TempDir()
	dir, backing := filepath.Join(root, "mnt"), filepath.Join(root, "disk")
	for _, d := range []string{dir, backing} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return powerfs.Start(t, dir, backing), backing
}

func write(t *testing.T, name string, flag int, data []byte, sync bool) {
	t.Helper()
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|flag, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	if sync {
		if err := f.Sync(); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func content(t *testing.T, name string) string {
	t.Helper()
	data, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// TestPowerLossKeepsWhatWasSynced writes files through the FS in the ways
// a store does, and checks what the FS shows before the loss (everything)
// and what the backing directory holds after it (what was synced).
func TestPowerLossKeepsWhatWasSynced(t *testing.T) {
	pfs, backing := mount(t)
	in := func(name string) string { return filepath.Join(pfs.Dir(), name) }

	write(t, in("synced"), 0, []byte("kept"), true)
	write(t, in("unsynced"), 0, []byte("lost"), false)
	write(t, in("o_sync"), os.O_SYNC, []byte("kept too"), false)
	write(t, in("appended"), 0, []byte("kept"), true)
	write(t, in("appended"), os.O_APPEND, []byte(", lost"), false)
	write(t, in("truncated"), 0, bytes.Repeat([]byte("k"), 10000), true)
	if err := os.Truncate(in("truncated"), 3); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(in("truncated"), 0o600); err != nil {
		t.Fatal(err)
	}
	write(t, in("replaced"), 0, []byte("lost"), false)
	write(t, in("replacing"), 0, []byte("kept"), true)
	if err := os.Rename(in("replacing"), in("replaced")); err != nil {
		t.Fatal(err)
	}
	write(t, in("renamed.tmp"), 0, []byte("lost"), false)
	if err := os.Rename(in("renamed.tmp"), in("renamed")); err != nil {
		t.Fatal(err)
	}
	write(t, in("removed"), 0, []byte("gone"), false)
	if err := os.Remove(in("removed")); err != nil {
		t.Fatal(err)
	}

	before := map[string]string{
		"synced": "kept", "unsynced": "lost", "o_sync": "kept too", "appended": "kept, lost",
		"truncated": "kkk", "renamed": "lost", "replaced": "kept",
	}
	for name, want := range before {
		if got := content(t, in(name)); got != want {
			t.Errorf("before the loss, %s reads %q, want %q", name, got, want)
		}
	}
	if info, err := os.Stat(in("appended")); err != nil || info.Size() != int64(len("kept, lost")) {
		t.Errorf("before the loss, appended: %v, %v", info, err)
	}

	stats, err := pfs.PowerLoss()
	if err != nil {
		t.Fatal(err)
	}
	t.Log(stats)
	after := map[string]string{
		"synced": "kept", "unsynced": "", "o_sync": "kept too", "appended": "kept",
		"truncated": string(bytes.Repeat([]byte("k"), 10000)), "renamed": "", "replaced": "kept",
	}
	for name, want := range after {
		if got := content(t, filepath.Join(backing, name)); got != want {
			t.Errorf("after the loss, %s holds %q, want %q", name, got, want)
		}
	}
	if info, err := os.Stat(filepath.Join(backing, "truncated")); err != nil || info.Mode().Perm() != 0o600 {
		t.Errorf("after the loss, truncated: %v, %v; want mode 0600 (metadata is not volatile)", info, err)
	}
	if _, err := os.Stat(filepath.Join(backing, "removed")); !os.IsNotExist(err) {
		t.Errorf("a removed file is back after the loss: %v", err)
	}
	if stats.LostFiles != 4 {
		t.Errorf("lost the unsynced data of %d files, want 4 (unsynced, appended, truncated, renamed)", stats.LostFiles)
	}
}

// TestUnmountKeepsEverything checks that an orderly unmount writes what
// was not synced, as a machine's shutdown does.
func TestUnmountKeepsEverything(t *testing.T) {
	pfs, backing := mount(t)
	write(t, filepath.Join(pfs.Dir(), "f"), 0, []byte("kept"), false)
	if err := pfs.Unmount(); err != nil {
		t.Fatal(err)
	}
	if got := content(t, filepath.Join(backing, "f")); got != "kept" {
		t.Errorf("after unmounting, f holds %q, want %q", got, "kept")
	}
}

// TestChildrenDoNotInheritTheConnection checks that a process started
// after the mount holds no descriptor of /dev/fuse: one that did would
// keep the mount alive, unanswered, after the test process died.
func TestChildrenDoNotInheritTheConnection(t *testing.T) {
	mount(t)
	out, err := exec.Command("ls", "-l", "/proc/self/fd/").CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if strings.Contains(string(out), "/dev/fuse") {
		t.Errorf("a child process holds the FUSE connection:\n%s", out)
	}
}
