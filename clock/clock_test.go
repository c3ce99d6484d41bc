package clock_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/recoverpasscode/recoverpasscode/clock"
	"github.com/recoverpasscode/recoverpasscode/devserver/devservertest"
	"github.com/recoverpasscode/recoverpasscode/internal/testsystem"
)

// bucket starts a server and returns a bucket on it.
func bucket(t *testing.T) jetstream.KeyValue {
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
	kv, err := js.CreateKeyValue(t.Context(), jetstream.KeyValueConfig{Bucket: "clock_test", History: 1})
	if err != nil {
		t.Fatal(err)
	}
	return kv
}

// skewed is the real clock off by d.
func skewed(d time.Duration) func() time.Time {
	return func() time.Time { return time.Now().Add(d) }
}

// TestNowIsTheServersTime: whatever the local clock says, Now agrees with
// the server's (here the same machine's real clock) to within the
// measurement's uncertainty, and the offset undoes the skew.
func TestNowIsTheServersTime(t *testing.T) {
	kv := bucket(t)
	for _, skew := range []time.Duration{2 * time.Second, -2 * time.Second, 0, 90 * time.Minute} {
		t.Run(skew.String(), func(t *testing.T) {
			c, err := clock.New(clock.Config{KV: kv, Key: "clock.test", Local: skewed(skew)})
			if err != nil {
				t.Fatal(err)
			}
			if got := c.Now().Sub(time.Now()); got < skew-time.Second || got > skew+time.Second {
				t.Errorf("before any measurement Now is off by %s, want the local clock (%s)", got, skew)
			}
			m, err := c.Sync(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			slack := m.Uncertainty + clock.DefaultTolerance + time.Millisecond
			if d := m.Offset + skew; d < -slack || d > slack {
				t.Errorf("offset %s with the clock %s off: %s from undoing it, more than %s", m.Offset, skew, d, slack)
			}
			if d := c.Now().Sub(time.Now()); d < -slack || d > slack {
				t.Errorf("Now is %s from the server's time, more than %s", d, slack)
			}
			if got := c.Local().Sub(time.Now()); got < skew-time.Second || got > skew+time.Second {
				t.Errorf("Local is off by %s, want %s", got, skew)
			}
		})
	}
}

// TestFresh: Fresh measures only when the measurement is older than MaxAge,
// and keeps an old one when it cannot measure.
func TestFresh(t *testing.T) {
	kv := bucket(t)
	now := time.Now()
	local := func() time.Time { return now }
	c, err := clock.New(clock.Config{KV: kv, Key: "clock.fresh", Local: local, MaxAge: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	revision := func() uint64 {
		e, err := kv.Get(t.Context(), "clock.fresh")
		if err != nil {
			t.Fatal(err)
		}
		return e.Revision()
	}
	if err := c.Fresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	first := revision()
	now = now.Add(30 * time.Second)
	if err := c.Fresh(t.Context()); err != nil || revision() != first {
		t.Errorf("a 30s old measurement was taken again (err %v)", err)
	}
	now = now.Add(31 * time.Second)
	if err := c.Fresh(t.Context()); err != nil || revision() == first {
		t.Errorf("a 61s old measurement was not taken again (err %v)", err)
	}
	now = now.Add(2 * time.Minute)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := c.Fresh(ctx); err != nil {
		t.Errorf("Fresh failed with an older measurement to fall back on: %v", err)
	}
	fresh, err := clock.New(clock.Config{KV: kv, Key: "clock.never", Local: local})
	if err != nil {
		t.Fatal(err)
	}
	if err := fresh.Fresh(ctx); err == nil {
		t.Error("Fresh without any measurement and no server succeeded")
	}
	if _, ok := fresh.Measured(); ok {
		t.Error("a measurement from nowhere")
	}
}

// TestWithinToleranceIsLeftAlone: a clock that is nearly right reads the
// local time exactly, so that hosts in step agree to the nanosecond.
func TestWithinToleranceIsLeftAlone(t *testing.T) {
	kv := bucket(t)
	now := time.Now()
	c, err := clock.New(clock.Config{KV: kv, Key: "clock.tolerance", Local: func() time.Time { return now }, Tolerance: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Sync(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := c.Now(); !got.Equal(now) {
		t.Errorf("Now = %s, want the local %s", got, now)
	}
	if got := c.ToServer(now); !got.Equal(now) {
		t.Errorf("ToServer = %s, want %s", got, now)
	}
}

// TestSyncOnAReplicatedBucket: Sync measures on an R3 bucket through every
// node a process may be connected to. Reads there may be answered by a
// replica; TestSoakChurn met one that had not applied the probe's write
// yet (a node catching up after its restart), which readBack waits out.
// A healthy in-process cluster rarely lags enough to show it here.
func TestSyncOnAReplicatedBucket(t *testing.T) {
	c := devservertest.StartCluster(t)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if _, err := c.WaitMetaLeader(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range c.Size() {
		nc, err := nats.Connect(c.NodeURL(i))
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		var kv jetstream.KeyValue
		testsystem.Retry(ctx, t, "create the bucket", func(ctx context.Context) error {
			kv, err = js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "clock_r3", History: 1, Replicas: 3})
			return err
		})
		clk, err := clock.New(clock.Config{KV: kv, Key: clock.Key(c.NodeName(i))})
		if err != nil {
			t.Fatal(err)
		}
		for range 20 {
			if _, err := clk.Sync(ctx); err != nil {
				t.Fatalf("through node %d: %v", i, err)
			}
		}
	}
}

func TestNewRequiresABucketAndAKey(t *testing.T) {
	if _, err := clock.New(clock.Config{Key: "k"}); err == nil {
		t.Error("no bucket accepted")
	}
	if _, err := clock.New(clock.Config{KV: bucket(t)}); err == nil {
		t.Error("no key accepted")
	}
}

func TestKey(t *testing.T) {
	for name, want := range map[string]string{
		"host-1234":  "clock.host-1234",
		"w_1":        "clock.w_1",
		"pod.ns.svc": "clock.=cG9kLm5zLnN2Yw",
		"":           "clock.=",
		"a b":        "clock.=YSBi",
	} {
		if got := clock.Key(name); got != want {
			t.Errorf("Key(%q) = %q, want %q", name, got, want)
		}
	}
}
