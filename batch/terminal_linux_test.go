package batch_test

import (
	"fmt"
	"os"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/recoverpasscode/recoverpasscode/batch"
)

// TestPseudoTerminalIsATerminal: the other side of TestIsTerminal, a
// pseudo-terminal such as the one a person's shell runs on is one, unless
// $TERM says it cannot redraw a line.
func TestPseudoTerminalIsATerminal(t *testing.T) {
	pty := openPTY(t)
	t.Setenv("TERM", "xterm")
	if !batch.IsTerminal(pty) {
		t.Error("a pseudo-terminal not taken for a terminal")
	}
	t.Setenv("TERM", "dumb")
	if batch.IsTerminal(pty) {
		t.Error("TERM=dumb taken for a terminal that can redraw a line")
	}
}

// openPTY opens a new pseudo-terminal and returns its terminal side,
// closed when the test ends.
func openPTY(t *testing.T) *os.File {
	t.Helper()
	ptmx, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	t.Cleanup(func() { ptmx.Close() })
	if err := unix.IoctlSetPointerInt(int(ptmx.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatalf("unlock pseudo-terminal: %v", err)
	}
	n, err := unix.IoctlGetUint32(int(ptmx.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatalf("pseudo-terminal number: %v", err)
	}
	pts, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pts.Close() })
	return pts
}
