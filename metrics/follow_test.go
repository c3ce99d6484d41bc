package metrics

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/recoverpasscode/recoverpasscode/wire"
)

// TestConfirmationStatesFromTheStart: every state is exported at 0 before
// its first confirmation, so that increase() counts that one too.
func TestConfirmationStatesFromTheStart(t *testing.T) {
	reg := prometheus.NewRegistry()
	NewFollow(reg)
	var want strings.Builder
	want.WriteString("# HELP recoverpasscode_confirmations_total Confirmations stored by this worker, by state (done, failed, canceled, notSupported, unknown).\n# TYPE recoverpasscode_confirmations_total counter\n")
	for _, state := range []string{wire.StateCanceled, wire.StateDone, wire.StateFailed, wire.StateNotSupported, wire.StateUnknown} {
		want.WriteString(`recoverpasscode_confirmations_total{state="` + state + "\"} 0\n")
	}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want.String()), "recoverpasscode_confirmations_total"); err != nil {
		t.Error(err)
	}
}
