package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/recoverpasscode/recoverpasscode/graph/graphsim"
	"github.com/recoverpasscode/recoverpasscode/internal/testsystem"
	"github.com/recoverpasscode/recoverpasscode/quota"
	"github.com/recoverpasscode/recoverpasscode/wire"
)

// TestSourceBudgetHoldsAndReleases is the acceptance of source budgets:
// with RECOVER_SOURCE_LIMITS=judge=50/1h, 100 jobs from source judge make
// exactly 50 Graph calls and 50 results; the other 50 are held (neither
// failed nor dead-lettered), listed by `enqueue held list` and audited;
// released with `enqueue held release`, they finish with one result each.
func TestSourceBudgetHoldsAndReleases(t *testing.T) {
	t.Parallel()
	sys := testsystem.Start(t, graphsim.Config{Limit: -1})
	cfg := fastWorker(sys, "w1")
	limits, err := quota.ParseLimits("judge=50/1h")
	if err != nil {
		t.Fatal(err)
	}
	cfg.SourceLimits = limits
	sys.StartWorker(cfg)
	const n = 100
	for i := range n {
		sys.Submit("judge", wire.Job{ID: fmt.Sprintf("judge-%03d", i), ManagedDeviceID: testsystem.DeviceN(i), Ticket: fmt.Sprintf("J%d", i)})
	}
	first := sys.Results("", 50, 60*time.Second)
	kv, err := sys.JS.KeyValue(t.Context(), sys.Names.LimitsBucket())
	if err != nil {
		t.Fatal(err)
	}
	store := quota.New(sys.JS, kv, nil)
	var held []quota.Held
	if !testsystem.Eventually(30*time.Second, func() bool {
		held, err = store.List(t.Context(), "judge")
		return err == nil && len(held) == n-50
	}) {
		t.Fatalf("%d jobs held (%v), want %d", len(held), err, n-50)
	}
	if got := len(sys.GS.Calls()); got != 50 {
		t.Errorf("%d Graph calls with 50 jobs held, want exactly the budget's 50", got)
	}
	if got := streamMsgs(t, sys, sys.Names.ResultsStream()); got != 50 {
		t.Errorf("%d results stored with 50 jobs held, want 50", got)
	}
	if got := streamMsgs(t, sys, sys.Names.DLQStream()); got != 0 {
		t.Errorf("%d dead letters, want none: a held job is not failed", got)
	}
	for _, r := range first {
		if r.Status != wire.Succeeded {
			t.Errorf("%s: %s %s", r.JobID, r.Status, r.Error)
		}
	}

	list := enqueue(t.Context(), t, sys, "held", "list", "--source", "judge")
	if list.code != exitOK || !strings.Contains(list.stdout, "50 held job(s)") || !strings.Contains(list.stdout, "50/1h") {
		t.Fatalf("held list: %s", list)
	}
	for _, h := range held {
		if _, done := first[h.JobID]; done || !strings.Contains(list.stdout, h.JobID) {
			t.Errorf("held job %s: listed %t, already answered %t", h.JobID, strings.Contains(list.stdout, h.JobID), done)
		}
	}
	waitAudit(t, sys, wire.KindHeld, 50)

	release := enqueue(t.Context(), t, sys, "held", "release", "--source", "judge", "--by", "tester")
	if release.code != exitOK || !strings.Contains(release.stdout, "50 job(s) released") {
		t.Fatalf("held release: %s", release)
	}
	all := sys.Results("", n, 60*time.Second) // fails on a second result for a job
	for id, r := range all {
		if r.Status != wire.Succeeded {
			t.Errorf("%s: %s %s", id, r.Status, r.Error)
		}
	}
	if got := len(sys.GS.Calls()); got != n {
		t.Errorf("%d Graph calls for %d jobs, want one each", got, n)
	}
	waitAudit(t, sys, wire.KindReleased, 50)
	if after := enqueue(t.Context(), t, sys, "held", "list"); !strings.Contains(after.stdout, "no held jobs") {
		t.Errorf("held list after the release: %s", after)
	}
}

// TestHeldUsage checks the subcommand's refusals.
func TestHeldUsage(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"held"}, "want list or release"},
		{[]string{"held", "release"}, "--source S, --id ID or --all"},
		{[]string{"held", "release", "--all", "--source", "a"}, "give it alone"},
		{[]string{"held", "list", "--source", "a.b"}, "one subject token"},
	} {
		inv := enqueue(t.Context(), t, nil, tc.args...)
		if inv.code != exitFailed || !strings.Contains(inv.stderr, tc.want) {
			t.Errorf("enqueue %v: %s; want an error about %q", tc.args, inv, tc.want)
		}
	}
}

// streamMsgs is the number of messages a stream holds.
func streamMsgs(t *testing.T, sys *testsystem.System, name string) uint64 {
	t.Helper()
	s, err := sys.JS.Stream(t.Context(), name)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

// waitAudit waits until the audit stream holds n events of kind.
func waitAudit(t *testing.T, sys *testsystem.System, kind string, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cons, err := sys.JS.OrderedConsumer(ctx, sys.Names.AuditStream(), jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	it, err := cons.Messages()
	if err != nil {
		t.Fatal(err)
	}
	defer it.Stop()
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	seen := map[string]bool{}
	for len(seen) < n {
		msg, err := it.Next()
		if err != nil {
			t.Fatalf("%d %s audit events of %d: %v", len(seen), kind, n, err)
		}
		var e wire.AuditEvent
		if json.Unmarshal(msg.Data(), &e) == nil && e.Kind == kind {
			if seen[e.JobID] {
				t.Fatalf("two %s audit events for job %s", kind, e.JobID)
			}
			if e.Reason == "" || e.Source != "judge" {
				t.Errorf("%s event %+v: want the source and a reason", kind, e)
			}
			seen[e.JobID] = true
		}
	}
}
