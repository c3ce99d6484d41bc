package scan_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/recoverpasscode/recoverpasscode/devserver/devservertest"
	"github.com/recoverpasscode/recoverpasscode/scan"
)

// stream starts a server and stores n messages: subject s.even.<i> or
// s.odd.<i>, body "<i>", at sequences 1..n.
func stream(t *testing.T, n int) scan.Reader {
	t.Helper()
	nc, err := nats.Connect(devservertest.Start(t).URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "S", Subjects: []string{"s.>"}, Storage: jetstream.MemoryStorage}); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= n; i++ {
		kind := "odd"
		if i%2 == 0 {
			kind = "even"
		}
		if _, err := js.PublishAsync(fmt.Sprintf("s.%s.%d", kind, i), []byte(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-ctx.Done():
		t.Fatal(ctx.Err())
	}
	return scan.Reader{JS: js}
}

func bodies(t *testing.T, fn func(func(jetstream.Msg) bool) error, stop int) []string {
	t.Helper()
	var out []string
	if err := fn(func(m jetstream.Msg) bool {
		out = append(out, string(m.Data()))
		return len(out) != stop
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func seq(from, to, step int) []string {
	var out []string
	for i := from; (step > 0 && i <= to) || (step < 0 && i >= to); i += step {
		out = append(out, fmt.Sprint(i))
	}
	return out
}

func TestForward(t *testing.T) {
	r := stream(t, 600) // more than one pull
	for _, tc := range []struct {
		name string
		rg   scan.Range
		stop int
		want []string
	}{
		{"all", scan.Range{Filter: "s.>"}, 0, seq(1, 600, 1)},
		{"filter", scan.Range{Filter: "s.even.*"}, 0, seq(2, 600, 2)},
		{"start and stop", scan.Range{Filter: "s.>", StartSeq: 300, StopSeq: 310}, 0, seq(300, 309, 1)},
		{"max", scan.Range{Filter: "s.>", StartSeq: 10, Max: 300}, 0, seq(10, 309, 1)},
		{"fn stops", scan.Range{Filter: "s.odd.*"}, 3, []string{"1", "3", "5"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.rg.Stream = "S"
			got := bodies(t, func(fn func(jetstream.Msg) bool) error { return r.Forward(t.Context(), tc.rg, fn) }, tc.stop)
			if !slices.Equal(got, tc.want) {
				t.Fatalf("got %d messages %v..., want %d %v...", len(got), got[:min(len(got), 5)], len(tc.want), tc.want[:min(len(tc.want), 5)])
			}
		})
	}
}

func TestBackward(t *testing.T) {
	r := stream(t, 3000) // more than the first window
	t.Run("all newest first", func(t *testing.T) {
		var next uint64
		got := bodies(t, func(fn func(jetstream.Msg) bool) (err error) {
			next, err = r.Backward(t.Context(), "S", "s.even.*", 0, 1_000_000, fn)
			return err
		}, 0)
		if want := seq(3000, 2, -2); !slices.Equal(got, want) || next != 0 {
			t.Fatalf("got %d messages, next %d; want %d, next 0", len(got), next, len(want))
		}
	})
	t.Run("pages", func(t *testing.T) {
		// A page stops on the message fn refused: the next page starts before it.
		var next uint64
		got := bodies(t, func(fn func(jetstream.Msg) bool) (err error) {
			next, err = r.Backward(t.Context(), "S", "s.>", 2001, 1_000_000, fn)
			return err
		}, 1500)
		if want := seq(2000, 501, -1); !slices.Equal(got, want) || next != 501 {
			t.Fatalf("got %d messages, next %d; want %d, next 501", len(got), next, len(want))
		}
	})
	t.Run("max scan", func(t *testing.T) {
		// The first window is 1024 sequences: with maxScan 1024 the scan
		// ends there, and says where it stopped.
		var next uint64
		got := bodies(t, func(fn func(jetstream.Msg) bool) (err error) {
			next, err = r.Backward(t.Context(), "S", "s.>", 0, 1024, fn)
			return err
		}, 0)
		if want := seq(3000, 1977, -1); !slices.Equal(got, want) || next != 1977 {
			t.Fatalf("got %d messages, next %d; want %d, next 1977", len(got), next, len(want))
		}
	})
	t.Run("no stream", func(t *testing.T) {
		_, err := r.Backward(t.Context(), "NONE", "s.>", 0, 10, func(jetstream.Msg) bool { return true })
		if !errors.Is(err, jetstream.ErrStreamNotFound) {
			t.Fatalf("err = %v, want jetstream.ErrStreamNotFound", err)
		}
	})
}
