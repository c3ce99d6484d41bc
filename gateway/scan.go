package gateway

import (
	"context"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/recoverpasscode/recoverpasscode/scan"
)

// streams reads the streams, each call bounded by the store's timeout.
func (st *store) streams() scan.Reader {
	return scan.Reader{JS: st.js, Timeout: st.timeout}
}

// read passes each message of the range to fn, in stream order, until fn
// returns false or the range ends (scan.Reader.Forward), failing fast
// when NATS is not connected.
func (st *store) read(ctx context.Context, rg scan.Range, fn func(jetstream.Msg) bool) error {
	if err := st.connected(); err != nil {
		return err
	}
	if err := st.streams().Forward(ctx, rg, fn); err != nil {
		return st.wrap(err)
	}
	return nil
}
