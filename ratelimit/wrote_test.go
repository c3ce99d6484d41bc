package ratelimit

import (
	"testing"
	"time"
)

// A call written (or answered) long after its permit's stamp moves the
// stamp in the shared log, so that another process grants the next permit
// a full window after the write, not after the stamp.
func TestLateCallsMoveTheirStamps(t *testing.T) {
	rate := Rate{N: 1, Per: time.Second}
	for _, tc := range []struct {
		name string
		// report tells the Limiter about the call, returning when it
		// reached Graph at the latest.
		report func(l *Limiter, p Permit) time.Time
	}{
		{"written late", func(l *Limiter, p Permit) time.Time {
			sent := time.Now().Add(300 * time.Millisecond) // a TLS handshake on a starved host
			l.Wrote(p, sent)
			// Answered at once, so that it is not moved along as a call
			// in flight (see TestUnansweredCallsKeepTheirStamps).
			l.Answered(p, sent)
			return sent
		}},
		{"answered late", func(l *Limiter, p Permit) time.Time {
			sent := time.Now()
			l.Wrote(p, sent)
			// A stand-in that took 300 ms to read the call on a starved
			// host, three tenths of the window: the whole of it counts,
			// less the half of the Margin any call may be late by (the
			// Limiter's first answers are judged against a least of 0).
			answered := sent.Add(300 * time.Millisecond)
			l.Answered(p, answered)
			return answered.Add(-l.cfg.Margin / 2)
		}},
		{"answered late among slow answers", func(l *Limiter, p Permit) time.Time {
			// Ten seconds of answers in 5 ms, then a spell of slow ones
			// (a loaded host): they do not pass for Graph's latency, so a
			// call the stand-in read 150 ms late still counts late.
			start := time.Now().Add(-leastSpan)
			for i := range 2 * leastSlots {
				l.least.note(start.Add(time.Duration(i)*leastSpan/(2*leastSlots)), 5*time.Millisecond)
			}
			for range 100 {
				l.least.note(time.Now(), 150*time.Millisecond)
			}
			sent := time.Now()
			l.Wrote(p, sent)
			answered := sent.Add(150 * time.Millisecond)
			l.Answered(p, answered)
			return answered.Add(-5*time.Millisecond - l.cfg.Margin/2)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFleet(t, 2, Config{App: testApp, Rate: rate})
			first, second := f.limiters[0], f.limiters[1]
			p, err := first.Take(t.Context(), tenantA)
			if err != nil {
				t.Fatalf("Take: %v", err)
			}
			stamp := p.use.stamp
			arrived := tc.report(first, p)
			if m := first.Stats().Moved; m != 1 {
				t.Fatalf("Moved = %d, want 1", m)
			}
			eventually(t, 5*time.Second, "the moved stamp to reach the log", func() bool {
				entry, err := f.kv.Get(t.Context(), windowKey(keyToken(testApp), keyToken(tenantA)))
				if err != nil {
					return false
				}
				w, err := decodeWindow(entry.Value())
				if err != nil {
					return false
				}
				// A loaded host may have let an earlier grant expire
				// before Take returned: it stays in the log, unmoved.
				moved := false
				for _, g := range w.Grants {
					if g.Until == stamp {
						return false
					}
					moved = moved || !time.UnixMilli(g.Until).Before(arrived)
				}
				return moved
			})
			if _, err := second.Wait(t.Context(), tenantA); err != nil {
				t.Fatalf("Wait: %v", err)
			}
			if got := time.Since(arrived); got < rate.Per {
				t.Errorf("the next permit came %s after the late call reached Graph, want at least %s", got, rate.Per)
			}
			// Reporting again changes nothing.
			tc.report(first, p)
			if m := first.Stats().Moved; m != 1 {
				t.Errorf("Moved = %d after a second report, want 1", m)
			}
		})
	}
}

// A tenant that has learned nothing starts its run of grants with at most
// coldInFlight calls per answer time, doubling each window; one with a
// learned budget, or a Limiter that has seen no answer yet, does not.
func TestColdInterval(t *testing.T) {
	rate := Rate{N: 40, Per: 2 * time.Second}
	f := newFleet(t, 1, Config{App: testApp, Rate: rate})
	l := f.limiters[0]
	now := time.Now()
	since := now.UnixMilli()
	if got := l.coldInterval(keyToken(tenantA), now, since); got != 0 {
		t.Errorf("before any answer: %s, want 0", got)
	}
	l.noteMean(300 * time.Millisecond)
	for _, tc := range []struct {
		after time.Duration
		want  time.Duration
	}{
		{0, 100 * time.Millisecond},
		{rate.Per + time.Millisecond, 50 * time.Millisecond},
		{20 * rate.Per, 0},
	} {
		if got := l.coldInterval(keyToken(tenantA), now.Add(tc.after), since); got != tc.want {
			t.Errorf("%s into the run: %s, want %s", tc.after, got, tc.want)
		}
	}
	l.noteBudget(keyToken(tenantA), fullBudget(rate).cut(rate, now, 20, now), 1)
	if got := l.coldInterval(keyToken(tenantA), now, since); got != 0 {
		t.Errorf("with a learned budget: %s, want 0", got)
	}
}

// The least write-to-answer time is a minimum over the last leastSpan of
// answers: zero for a new Limiter's first leastWarm parts, not raised by a spell of slow answers,
// following a Graph whose latency grew once the faster answers are a
// leastSpan old, and kept across an idle spell.
func TestLeastFilter(t *testing.T) {
	var f leastFilter
	part := leastSpan / leastSlots
	// At the start of a part, so that the answers below fall in the parts
	// they are meant for (100 ms after a time late in its part is in the
	// next one).
	at := time.Unix(0, time.Now().UnixNano()/int64(part)*int64(part))
	// Every worker starting at once: the first answers are the slowest,
	// and the first leastWarm parts count as zero; then what was seen.
	for i := range leastSlots {
		want := 200 * time.Millisecond
		if i < leastWarm {
			want = 0
		}
		if got := f.note(at.Add(time.Duration(i)*part), 200*time.Millisecond); got != want {
			t.Fatalf("answer %d of a new filter: least %s, want %s", i, got, want)
		}
	}
	at = at.Add(leastSpan)
	for i := range leastSlots {
		f.note(at.Add(time.Duration(i)*part), 5*time.Millisecond)
	}
	at = at.Add(leastSpan)
	for i := range 100 {
		if got := f.note(at.Add(time.Duration(i)*time.Millisecond), 150*time.Millisecond); got != 5*time.Millisecond {
			t.Fatalf("slow answer %d: least %s, want the 5ms of the last %s", i, got, leastSpan)
		}
	}
	if got := f.note(at, time.Millisecond); got != time.Millisecond {
		t.Errorf("a faster answer: least %s, want 1ms at once", got)
	}
	// Graph got slower: 50 ms answers for a whole span.
	for i := range leastSlots + 1 {
		f.note(at.Add(time.Duration(i+1)*part), 50*time.Millisecond)
	}
	if got := f.note(at.Add(time.Duration(leastSlots+1)*part), 50*time.Millisecond); got != 50*time.Millisecond {
		t.Errorf("after %s of 50ms answers: least %s, want 50ms", leastSpan, got)
	}
	// An hour idle, then a slow answer: judged by what was known.
	if got := f.note(at.Add(time.Hour), 300*time.Millisecond); got != 50*time.Millisecond {
		t.Errorf("after an idle hour: least %s, want the 50ms known before", got)
	}
}

// A call still unanswered long after its stamp may reach Graph at any
// moment: its stamp is moved along while it is in flight, so that no
// other process grants a permit on the old stamp, and once it is answered
// (or ends without an answer) the next permit comes a window after that.
func TestUnansweredCallsKeepTheirStamps(t *testing.T) {
	rate := Rate{N: 1, Per: time.Second}
	for _, tc := range []struct {
		name string
		end  func(l *Limiter, p Permit, at time.Time)
	}{
		{"answered", func(l *Limiter, p Permit, at time.Time) { l.Answered(p, at) }},
		{"ended unanswered", func(l *Limiter, p Permit, at time.Time) { l.Ended(p, at) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFleet(t, 2, Config{App: testApp, Rate: rate})
			first, second := f.limiters[0], f.limiters[1]
			p, err := first.Take(t.Context(), tenantA)
			if err != nil {
				t.Fatalf("Take: %v", err)
			}
			written := time.Now()
			first.Wrote(p, written)
			granted := make(chan time.Time, 1)
			go func() {
				if _, err := second.Wait(t.Context(), tenantA); err != nil {
					t.Errorf("Wait: %v", err)
				}
				granted <- time.Now()
			}()
			// Graph holds the call for two and a half windows.
			select {
			case at := <-granted:
				t.Fatalf("another permit came %s after the write, while the call was in flight", at.Sub(written))
			case <-time.After(5 * rate.Per / 2):
			}
			ended := time.Now()
			tc.end(first, p, ended)
			at := <-granted
			// The call may have reached Graph until it ended, less the
			// half of the Margin any call may be late by.
			if got, want := at.Sub(ended), rate.Per-first.cfg.Margin/2; got < want {
				t.Errorf("the next permit came %s after the call ended, want at least %s", got, want)
			}
			// Ending again changes nothing.
			moved := first.Stats().Moved
			first.Ended(p, time.Now())
			if m := first.Stats().Moved; m != moved {
				t.Errorf("Moved = %d after a second end, want %d", m, moved)
			}
		})
	}
}
