package batch

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"unicode"

	"github.com/recoverpasscode/recoverpasscode/wire"
)

// Summary is the final report of a batch: counts by status, then the rows
// that did not succeed with their device, Graph error code and message.
type Summary struct {
	// Batch is the batch name.
	Batch string
	// Rows is the number of rows expected, to count those still pending; 0
	// when unknown (results read without the file).
	Rows int
	// Outcomes are the results to report.
	Outcomes *Outcomes
	// Line returns the file line of a row id, 0 when unknown. May be nil.
	Line func(rowID string) int
	// MaxListed bounds the rows listed that did not succeed. Defaults to 50.
	MaxListed int
	// More says where the rest of a long list can be read, e.g. "see the
	// --output file".
	More string
}

// Write writes the summary as plain text with no control characters other
// than newlines.
func (s Summary) Write(w io.Writer) error {
	c := s.Outcomes.Counts()
	var b strings.Builder
	if s.Rows > 0 {
		fmt.Fprintf(&b, "batch %s: %d rows, %d with a result\n", s.Batch, s.Rows, c.Done())
	} else {
		fmt.Fprintf(&b, "batch %s: %d results\n", s.Batch, c.Done())
	}
	type row struct {
		label string
		n     int
		note  string
	}
	rows := []row{{"succeeded", c.Succeeded, ""}, {"failed", c.Failed, ""}, {"rejected", c.Rejected, ""}, {"expired", c.Expired, ""}}
	if c.Replayed > 0 {
		rows[0].note = fmt.Sprintf("(%d answered from an earlier job's record, Graph not called again)", c.Replayed)
	}
	if c.Other > 0 {
		rows = append(rows, row{"other", c.Other, ""})
	}
	if s.Rows > 0 {
		rows = append(rows, row{"pending", max(s.Rows-c.Done(), 0), "(no result yet)"})
	}
	width := len(strconv.Itoa(max(s.Rows, c.Done())))
	for _, r := range rows {
		line := fmt.Sprintf("  %-9s  %*d  %s", r.label, width, r.n, r.note)
		b.WriteString(strings.TrimRight(line, " ") + "\n")
	}
	if c.Uncertain > 0 {
		fmt.Fprintf(&b, "  %d result(s) are marked uncertain: the action may have run twice on those devices\n", c.Uncertain)
	}
	s.writeFailures(&b, c.NotSucceeded())
	_, err := io.WriteString(w, b.String())
	return err
}

func (s Summary) writeFailures(b *strings.Builder, n int) {
	if n == 0 {
		return
	}
	limit := s.MaxListed
	if limit <= 0 {
		limit = 50
	}
	fmt.Fprintf(b, "\ndid not succeed (%d):\n", n)
	tw := tabwriter.NewWriter(b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  LINE\tDEVICE\tSTATUS\tGRAPH\tCODE\tMESSAGE")
	listed := 0
	for _, r := range s.Outcomes.Results(s.line) {
		if r.Status == wire.Succeeded {
			continue
		}
		if listed == limit {
			break
		}
		listed++
		line := "-"
		if l := s.line(RowID(r.JobID)); l > 0 {
			line = strconv.Itoa(l)
		}
		status, code := "-", "-"
		if r.Graph != nil {
			status = strconv.Itoa(r.Graph.Status)
			if r.Graph.ErrorCode != "" {
				code = r.Graph.ErrorCode
			}
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\n", line, r.ManagedDeviceID, r.Status, status, code, Message(r))
	}
	tw.Flush()
	if n > listed {
		fmt.Fprintf(b, "  … and %d more", n-listed)
		if s.More != "" {
			fmt.Fprintf(b, " (%s)", s.More)
		}
		b.WriteString("\n")
	}
}

func (s Summary) line(rowID string) int {
	if s.Line == nil {
		return 0
	}
	return s.Line(rowID)
}

// Message is the one-line reason a result did not succeed: Graph's error
// message when Graph refused, else the worker's explanation; control
// characters become spaces and it is cut at 120 characters.
func Message(r wire.Result) string {
	msg := r.Error
	if r.Graph != nil && r.Graph.ErrorMessage != "" {
		msg = r.Graph.ErrorMessage
	}
	msg = strings.Map(func(c rune) rune {
		if unicode.IsControl(c) || c == '\u2028' || c == '\u2029' {
			return ' '
		}
		return c
	}, msg)
	if rs := []rune(msg); len(rs) > 120 {
		msg = string(rs[:119]) + "…"
	}
	return msg
}
