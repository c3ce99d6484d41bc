package ratelimit

import (
	"encoding/json"
	"slices"
	"testing"
	"time"
)

func TestGrantJSON(t *testing.T) {
	w := windowLog{Rate: "200/20s", Owner: "w1", At: time.UnixMilli(1000).UTC(), Grants: []grant{{1500, 10}, {1600, 3}}}
	b, err := json.Marshal(w)
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"rate":"200/20s","owner":"w1","at":"1970-01-01T00:00:01Z","grants":[[1500,10],[1600,3]]}`
	if string(b) != want {
		t.Errorf("Marshal = %s, want %s", b, want)
	}
	back, err := decodeWindow(b)
	if err != nil || !slices.Equal(back.Grants, w.Grants) {
		t.Errorf("decodeWindow = %+v, %v", back, err)
	}
	for _, bad := range []string{`{"grants":[[1,-2]]}`, `{"grants":[1]}`, `not json`} {
		if _, err := decodeWindow([]byte(bad)); err == nil {
			t.Errorf("decodeWindow(%s) succeeded", bad)
		}
	}
}

func TestUntilMillisRoundsUp(t *testing.T) {
	for _, tc := range []struct {
		t    time.Time
		want int64
	}{
		{time.UnixMilli(1000), 1000},
		{time.UnixMilli(1000).Add(time.Nanosecond), 1001},
		{time.UnixMilli(1000).Add(999 * time.Microsecond), 1001},
	} {
		if got := untilMillis(tc.t); got != tc.want {
			t.Errorf("untilMillis(%v) = %d, want %d", tc.t, got, tc.want)
		}
	}
}

func TestLiveAndFreeAt(t *testing.T) {
	const window = time.Second
	now := time.UnixMilli(10_000)
	grants := []grant{{9_500, 2}, {8_900, 5}, {9_000, 1}, {9_200, 3}, {9_700, 0}}
	got := live(grants, now, window)
	// 8_900 + 1s is before now, 9_000 + 1s is now: both have left the window.
	want := []grant{{9_200, 3}, {9_500, 2}}
	if !slices.Equal(got, want) {
		t.Fatalf("live = %v, want %v", got, want)
	}
	for _, tc := range []struct {
		n    int
		want time.Time
	}{
		{1, time.UnixMilli(10_500)}, // both grants must leave
		{5, time.UnixMilli(10_200)}, // the older grant must leave
		{4, time.UnixMilli(10_200)},
	} {
		if got := freeAt(got, tc.n, window); !got.Equal(tc.want) {
			t.Errorf("freeAt(n=%d) = %v, want %v", tc.n, got.UnixMilli(), tc.want.UnixMilli())
		}
	}
}

func TestTenantPool(t *testing.T) {
	now := time.Now()
	at := func(d time.Duration) slot { return slot{until: now.Add(d), stamp: now.Add(d).UnixMilli()} }
	tn := &tenant{}
	tn.deliver(2, at(-time.Millisecond))
	tn.deliver(1, at(time.Second))
	s, ok, expired := tn.take(now)
	if !ok || expired != 2 || s != at(time.Second) {
		t.Errorf("take = %v, %v, %d; want the unexpired permit after discarding 2", s, ok, expired)
	}
	if _, ok, _ := tn.take(now); ok {
		t.Error("take found a permit in an empty pool")
	}
	tn.deliver(1, at(2*time.Second))
	tn.putBack(at(time.Second))
	if s, _, _ := tn.take(now); s != at(time.Second) {
		t.Errorf("take = %v, want the permit that expires first", s)
	}
}

func TestApplyFixes(t *testing.T) {
	grants := []grant{{Until: 100, N: 2}, {Until: 200, N: 1}}
	got := applyFixes(grants, []fix{{from: 100, to: 150}, {from: 100, to: 150}, {from: 300, to: 400}})
	want := []grant{{Until: 100, N: 0}, {Until: 200, N: 1}, {Until: 150, N: 2}, {Until: 400, N: 1}}
	if !slices.Equal(got, want) {
		t.Errorf("applyFixes = %v, want %v", got, want)
	}
	if grants[0].N != 2 {
		t.Error("applyFixes changed its input")
	}
	if live := live(got, time.UnixMilli(0), time.Second); permits(live) != 4 || live[0].Until != 150 {
		t.Errorf("live after fixes = %v, want the moved permits in stamp order and none lost", live)
	}
}

func TestBucketConfig(t *testing.T) {
	f := newFleet(t, 0, Config{})
	st, err := f.kv.Status(t.Context())
	if err != nil {
		t.Fatalf("status: %v", err)
	}
	if st.History() != 1 || st.TTL() != BucketTTL || st.Bucket() != testBucket {
		t.Errorf("bucket %s: history %d, TTL %s; want 1 and %s", st.Bucket(), st.History(), st.TTL(), BucketTTL)
	}
	if c := BucketConfig("x", 0); c.Replicas != 1 {
		t.Errorf("replicas = %d, want 1", c.Replicas)
	}
}
