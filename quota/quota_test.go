package quota

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/recoverpasscode/recoverpasscode/clock"
	"github.com/recoverpasscode/recoverpasscode/devserver/devservertest"
	"github.com/recoverpasscode/recoverpasscode/ratelimit"
	"github.com/recoverpasscode/recoverpasscode/wire"
)

func TestParseLimits(t *testing.T) {
	hour := time.Hour
	for _, tc := range []struct {
		in      string
		want    Limits
		wantErr string
	}{
		{"", nil, ""},
		{" ", nil, ""},
		{"automation=100/1h,ticketing=unlimited", Limits{"automation": {N: 100, Per: hour}, "ticketing": ratelimit.Unlimited}, ""},
		{"judge = 50/1h", Limits{"judge": {N: 50, Per: hour}}, ""},
		{"judge", nil, "want source=N/duration"},
		{"a.b=1/1h", nil, "not a subject token"},
		{"judge=50/1h,judge=1/1m", nil, "named twice"},
		{"judge=lots", nil, "judge"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseLimits(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("ParseLimits(%q) = %v, %v; want an error about %q", tc.in, got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got.String() != tc.want.String() {
				t.Fatalf("ParseLimits(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
			}
		})
	}
	l, _ := ParseLimits("b=unlimited,a=5/1m")
	if got := l.Limited(); len(got) != 1 || got[0] != "a" {
		t.Errorf("Limited() = %v, want [a]", got)
	}
}

// TestAdmitHoldRelease walks a source over its budget: the budget admits
// exactly N distinct jobs, admits their redeliveries again for free,
// holds the rest with a record that lists, and lets a released job go.
func TestAdmitHoldRelease(t *testing.T) {
	js, kv := bucket(t)
	limits, err := ParseLimits("judge=3/1h,ticketing=unlimited")
	if err != nil {
		t.Fatal(err)
	}
	s := New(js, kv, limits)
	ctx := t.Context()
	job := func(i int) *wire.Job {
		return &wire.Job{ID: fmt.Sprintf("j-%d", i), TenantID: "t", ManagedDeviceID: "d", Ticket: fmt.Sprintf("INC%d", i)}
	}
	for i := range 3 {
		if a, err := s.Admit(ctx, "judge", job(i)); err != nil || !a.Admitted {
			t.Fatalf("job %d: %+v, %v; want admitted", i, a, err)
		}
	}
	if a, err := s.Admit(ctx, "judge", job(0)); err != nil || !a.Admitted {
		t.Fatalf("redelivery of an admitted job: %+v, %v; want admitted", a, err)
	}
	a, err := s.Admit(ctx, "judge", job(3))
	if err != nil || a.Admitted || !a.NewlyHeld || a.Holds != 1 || a.RetryAt.Before(time.Now().Add(59*time.Minute)) {
		t.Fatalf("the 4th job: %+v, %v; want newly held for about an hour", a, err)
	}
	if a, err = s.Admit(ctx, "judge", job(3)); err != nil || a.Admitted || a.NewlyHeld || a.Holds != 2 {
		t.Fatalf("the 4th job again: %+v, %v; want still held, twice", a, err)
	}
	for i := range 50 {
		if a, err := s.Admit(ctx, "ticketing", job(100+i)); err != nil || !a.Admitted {
			t.Fatalf("an unlimited source: %+v, %v", a, err)
		}
	}
	held, err := s.List(ctx, "")
	if err != nil || len(held) != 1 || held[0].JobID != "j-3" || held[0].Ticket != "INC3" || held[0].Budget != "3/1h" || held[0].Holds != 2 {
		t.Fatalf("List = %+v, %v; want job j-3 held twice", held, err)
	}
	if counts, err := s.Counts(ctx); err != nil || counts["judge"] != 1 || len(counts) != 1 {
		t.Errorf("Counts = %v, %v; want judge: 1", counts, err)
	}
	if _, err := s.Release(ctx, "judge", "j-9", "ops"); !errors.Is(err, ErrNotHeld) {
		t.Errorf("Release of a job not held = %v, want ErrNotHeld", err)
	}
	if h, err := s.Release(ctx, "judge", "j-3", "ops@example.com"); err != nil || !h.Released || h.ReleasedBy != "ops@example.com" {
		t.Fatalf("Release = %+v, %v", h, err)
	}
	a, err = s.Admit(ctx, "judge", job(3))
	if err != nil || !a.Admitted || !a.Freed || !a.Released || a.Holds != 2 {
		t.Fatalf("the released job: %+v, %v; want admitted by the release, having spent 2 deliveries held", a, err)
	}
	if held, err := s.List(ctx, "judge"); err != nil || len(held) != 0 {
		t.Errorf("List after the release = %+v, %v; want none", held, err)
	}
	if a, err := s.Admit(ctx, "judge", job(3)); err != nil || !a.Admitted || a.Freed || a.Holds != 2 {
		t.Errorf("a redelivery of the released job: %+v, %v; want admitted, remembering its holds", a, err)
	}
	if a, err := s.Admit(ctx, "judge", job(4)); err != nil || a.Admitted {
		t.Errorf("a 5th job: %+v, %v; want held: the release took no unit, the budget is still spent", a, err)
	}
}

// TestAdmitConcurrently has many jobs race for a small budget: exactly N
// are admitted.
func TestAdmitConcurrently(t *testing.T) {
	js, kv := bucket(t)
	s := New(js, kv, Limits{"judge": {N: 7, Per: time.Hour}})
	results := make(chan bool, 40)
	for i := range 40 {
		go func() {
			a, err := s.Admit(t.Context(), "judge", &wire.Job{ID: fmt.Sprintf("c-%d", i)})
			if err != nil {
				t.Errorf("Admit: %v", err)
			}
			results <- a.Admitted
		}()
	}
	admitted := 0
	for range 40 {
		if <-results {
			admitted++
		}
	}
	if admitted != 7 {
		t.Errorf("%d of 40 racing jobs admitted, want the budget's 7", admitted)
	}
}

func bucket(t *testing.T) (jetstream.JetStream, jetstream.KeyValue) {
	t.Helper()
	srv := devservertest.Start(t)
	nc, err := nats.Connect(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	kv, err := js.CreateKeyValue(ctx, ratelimit.BucketConfig("test_limits", 1))
	if err != nil {
		t.Fatal(err)
	}
	return js, kv
}

// A Store on a fleet clock keeps its window on the server's time, whatever
// the host's clock says, and answers RetryAt on the host's.
func TestAdmitOnTheServersClock(t *testing.T) {
	js, kv := bucket(t)
	const skew = time.Hour
	local := func() time.Time { return time.Now().Add(skew) }
	clk, err := clock.New(clock.Config{KV: kv, Key: clock.Key("fast-host"), Local: local})
	if err != nil {
		t.Fatal(err)
	}
	if err := clk.Fresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	limits, err := ParseLimits("judge=1/1h")
	if err != nil {
		t.Fatal(err)
	}
	s := New(js, kv, limits).WithClock(clk)
	for i, want := range []bool{true, false} {
		a, err := s.Admit(t.Context(), "judge", &wire.Job{ID: fmt.Sprintf("j%d", i), ManagedDeviceID: "d"})
		if err != nil || a.Admitted != want {
			t.Fatalf("Admit %d = %+v, %v; want admitted %t", i, a, err, want)
		}
		if !want && (a.RetryAt.Before(local().Add(59*time.Minute)) || a.RetryAt.After(local().Add(61*time.Minute))) {
			t.Errorf("RetryAt %s, want an hour from the host's clock, %s", a.RetryAt, local())
		}
	}
	entry, err := kv.Get(t.Context(), "quota.judge")
	if err != nil {
		t.Fatal(err)
	}
	var w window
	if err := json.Unmarshal(entry.Value(), &w); err != nil || len(w.Grants) != 1 {
		t.Fatalf("window %s: %v", entry.Value(), err)
	}
	if at := time.UnixMilli(w.Grants[0][0]); at.Sub(time.Now()).Abs() > time.Minute {
		t.Errorf("the window stamps %s, want the server's time %s, not the host's", at, time.Now())
	}
}

// TestRoom reads a source's window as the gateway does, with a Store that
// enforces nothing: it judges the window by the rate the worker wrote
// into it, takes no unit, and knows no budget without a window or a rate.
func TestRoom(t *testing.T) {
	js, kv := bucket(t)
	ctx := t.Context()
	worker := New(js, kv, Limits{"judge": {N: 2, Per: time.Hour}})
	door := New(js, kv, nil)
	room := func(want bool, wantRate string) time.Time {
		t.Helper()
		ok, retryAt, rate, err := door.Room(ctx, "judge")
		if err != nil || ok != want || (wantRate != "" && rate.String() != wantRate) || (wantRate == "" && rate != (ratelimit.Rate{})) {
			t.Fatalf("Room = %t, %s, %v, %v; want %t, rate %q", ok, retryAt, rate, err, want, wantRate)
		}
		return retryAt
	}
	room(true, "") // no window yet: no budget known
	for i := range 2 {
		if a, err := worker.Admit(ctx, "judge", &wire.Job{ID: fmt.Sprintf("j-%d", i)}); err != nil || !a.Admitted {
			t.Fatalf("Admit %d = %+v, %v", i, a, err)
		}
		if i == 0 {
			room(true, "2/1h")
		}
	}
	before, err := kv.Get(ctx, "quota.judge")
	if err != nil {
		t.Fatal(err)
	}
	retryAt := room(false, "2/1h")
	if d := time.Until(retryAt); d < 59*time.Minute || d > 61*time.Minute {
		t.Errorf("retryAt in %s, want about the window's hour", d)
	}
	if after, err := kv.Get(ctx, "quota.judge"); err != nil || after.Revision() != before.Revision() {
		t.Fatalf("Room wrote the window: revision %d -> %v, %v", before.Revision(), after, err)
	}
	a, err := worker.Admit(ctx, "judge", &wire.Job{ID: "j-2"})
	if err != nil || a.Admitted || !a.RetryAt.Equal(retryAt) {
		t.Fatalf("the 3rd job = %+v, %v; want held until Room's %s", a, err, retryAt)
	}
	if h, held, err := door.HeldJob(ctx, "judge", "j-2"); err != nil || !held || h.Budget != "2/1h" {
		t.Fatalf("HeldJob = %+v, %t, %v; want held under 2/1h", h, held, err)
	}
	if _, held, err := door.HeldJob(ctx, "judge", "j-0"); err != nil || held {
		t.Fatalf("HeldJob of an admitted job = %t, %v", held, err)
	}
	if _, err := door.Release(ctx, "judge", "j-2", "ops"); err != nil {
		t.Fatal(err)
	}
	if _, held, err := door.HeldJob(ctx, "judge", "j-2"); err != nil || held {
		t.Fatalf("HeldJob of a released job = %t, %v; want not held", held, err)
	}

	// An hour on, the window has room again.
	door.now = func() time.Time { return time.Now().Add(time.Hour + time.Minute) }
	room(true, "2/1h")
	door.now = time.Now

	// A window an older worker wrote, without its rate: no budget known.
	value, _ := json.Marshal(window{Grants: [][2]int64{{time.Now().UnixMilli(), 100}}})
	if _, err := kv.Put(ctx, "quota.legacy", value); err != nil {
		t.Fatal(err)
	}
	if ok, _, rate, err := door.Room(ctx, "legacy"); err != nil || !ok || rate != (ratelimit.Rate{}) {
		t.Errorf("Room of a window without a rate = %t, %v, %v; want room, no rate", ok, rate, err)
	}
	if _, _, _, err := door.Room(ctx, "not.a.token"); err == nil {
		t.Error("Room of a source that is no subject token: no error")
	}
}

func TestAnnounce(t *testing.T) {
	js, kv := bucket(t)
	ctx := t.Context()
	door := New(js, kv, nil)
	room := func(want bool, wantRate string) {
		t.Helper()
		ok, _, rate, err := door.Room(ctx, "judge")
		if err != nil || ok != want || (wantRate != "" && rate.String() != wantRate) {
			t.Fatalf("Room = %t, %v, %v; want %t, rate %q", ok, rate, err, want, wantRate)
		}
	}
	old := New(js, kv, Limits{"judge": {N: 1, Per: time.Hour}, "other": {N: 1, Per: time.Hour}})
	for _, source := range []string{"judge", "other"} {
		if a, err := old.Admit(ctx, source, &wire.Job{ID: "j-" + source}); err != nil || !a.Admitted {
			t.Fatalf("Admit = %+v, %v", a, err)
		}
	}
	room(false, "1/1h")

	// Restarted with judge's budget raised: the door sees the new rate
	// before any job is admitted under it.
	if err := New(js, kv, Limits{"judge": {N: 5, Per: time.Hour}, "other": {N: 1, Per: time.Hour}}).Announce(ctx); err != nil {
		t.Fatal(err)
	}
	room(true, "5/1h")
	// Lifted: no budget known at the door; other's window is left as it is.
	other, err := kv.Get(ctx, "quota.other")
	if err != nil {
		t.Fatal(err)
	}
	if err := New(js, kv, Limits{"judge": ratelimit.Unlimited, "other": {N: 1, Per: time.Hour}}).Announce(ctx); err != nil {
		t.Fatal(err)
	}
	room(true, "")
	if after, err := kv.Get(ctx, "quota.other"); err != nil || after.Revision() != other.Revision() {
		t.Fatalf("Announce rewrote an unchanged window: revision %d -> %v, %v", other.Revision(), after, err)
	}
	// Lowered again: full at once.
	if err := old.Announce(ctx); err != nil {
		t.Fatal(err)
	}
	room(false, "1/1h")
}
