package batch

import (
	"fmt"
	"io"
	"math"
	"os"
	"strings"
	"time"

	"golang.org/x/term"
)

// Renderer shows the progress of a batch. Update is called often (several
// times a second); Finish once, last. Renderers are not safe for concurrent
// use.
type Renderer interface {
	Update(s Snapshot)
	Finish(s Snapshot)
}

// IsTerminal reports whether f is an interactive terminal that can redraw a
// line: a terminal (as golang.org/x/term tells), unless $TERM is "dumb".
func IsTerminal(f *os.File) bool {
	return os.Getenv("TERM") != "dumb" && term.IsTerminal(int(f.Fd()))
}

// Bar redraws one line on a terminal: a bar, done/total, succeeded and
// not, the rate and the time left.
type Bar struct {
	w     io.Writer
	width int
}

// NewBar returns a bar renderer writing to w, drawing a bar width cells
// wide. Defaults to 20 cells when width <= 0; the whole line then fits in
// 80 columns even for 10,000 rows.
func NewBar(w io.Writer, width int) *Bar {
	if width <= 0 {
		width = 20
	}
	return &Bar{w: w, width: width}
}

// Update redraws the line: carriage return, the line, erase to its end.
func (b *Bar) Update(s Snapshot) {
	fmt.Fprintf(b.w, "\r%s %d/%d %3.0f%%  ok %d  not ok %d  %s  ETA %s\x1b[K",
		b.bar(s), s.Done, s.Total, math.Floor(s.Percent()), s.Succeeded, s.NotSucceeded, rateText(s), etaText(s.ETA))
}

// Finish draws the last state and ends the line.
func (b *Bar) Finish(s Snapshot) {
	b.Update(s)
	fmt.Fprintln(b.w)
}

func (b *Bar) bar(s Snapshot) string {
	filled := b.width
	if s.Total > 0 {
		filled = int(math.Floor(float64(b.width) * float64(s.Done) / float64(s.Total)))
	}
	filled = min(max(filled, 0), b.width)
	return "[" + strings.Repeat("#", filled) + strings.Repeat("-", b.width-filled) + "]"
}

// Lines writes a plain line at most every period, for logs and pipes: no
// control characters, nothing redrawn.
type Lines struct {
	w      io.Writer
	period time.Duration
	last   time.Time
}

// NewLines returns a renderer writing a line to w when period has passed
// since the last one. Defaults to every 10 seconds when period <= 0.
func NewLines(w io.Writer, period time.Duration) *Lines {
	if period <= 0 {
		period = 10 * time.Second
	}
	return &Lines{w: w, period: period}
}

// Update writes a line if period has passed since the last (by the
// snapshot's time, so tests drive it with their own clock).
func (l *Lines) Update(s Snapshot) {
	if !l.last.IsZero() && s.At.Sub(l.last) < l.period {
		return
	}
	l.write(s)
}

// Finish writes the last line.
func (l *Lines) Finish(s Snapshot) { l.write(s) }

func (l *Lines) write(s Snapshot) {
	l.last = s.At
	fmt.Fprintf(l.w, "progress: %s\n", statusText(s))
}

// statusText is "4210/5000 84% | 4200 succeeded, 10 did not | 9.8/s | ETA 1m21s".
func statusText(s Snapshot) string {
	return fmt.Sprintf("%d/%d %3.0f%% | %d succeeded, %d did not | %s | ETA %s",
		s.Done, s.Total, math.Floor(s.Percent()), s.Succeeded, s.NotSucceeded, rateText(s), etaText(s.ETA))
}

func rateText(s Snapshot) string {
	if s.Rate <= 0 {
		return "-/s"
	}
	return fmt.Sprintf("%.1f/s", s.Rate)
}

func etaText(d time.Duration) string {
	if d < 0 {
		return "?"
	}
	return Duration(d)
}

// Duration formats d for people, rounded to the second (to the tenth below
// ten seconds, to the millisecond below one): "0s", "420ms", "4.2s",
// "1m21s", "2h05m".
func Duration(d time.Duration) string {
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < 10*time.Second:
		return d.Round(100 * time.Millisecond).String()
	case d < time.Hour:
		return d.Round(time.Second).String()
	default:
		d = d.Round(time.Minute)
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	}
}
