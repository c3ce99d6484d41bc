package devserver

import "testing"

// StartForTest starts a server on a random loopback port with its data in a
// temporary directory, and shuts it down when the test ends.
func StartForTest(tb testing.TB) *Server {
	tb.Helper()
	s, err := Start(Config{StoreDir: tb.TempDir()})
	if err != nil {
		tb.Fatalf("start embedded nats-server: %v", err)
	}
	tb.Cleanup(s.Shutdown)
	return s
}
