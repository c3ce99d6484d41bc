// Package batch is a batch of recoverPasscode jobs made from a file of
// devices (CSV or JSON Lines): reading and validating the file, deriving
// each row's job id and idempotency key from the batch name and the row's
// device, publishing the jobs, following their results, and rendering
// progress and the final summary.
//
// A row's job id and key depend only on the batch name and its device, so
// running a batch again submits nothing twice and collects the results of
// the earlier run.
package batch

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/recoverpasscode/recoverpasscode/wire"
)

// Batch is a named set of jobs, one per distinct device of a file. It is
// not changed after Read and is then safe for concurrent reading.
type Batch struct {
	// Name is the batch name, given or derived (see DeriveName).
	Name string
	// NameDerived is true when Name was derived from the devices.
	NameDerived bool
	// Source is the submitting system; jobs go to <prefix>.jobs.<source>.
	Source string
	// Rows are the valid rows naming a device no earlier row names, in
	// file order, each with its complete job.
	Rows []Row
	// Problems are the rows that cannot become jobs, in file order.
	Problems []Problem
	// Duplicates are valid rows naming a device an earlier row already
	// names; they are not submitted.
	Duplicates []Duplicate
	// Blank counts rows whose every value is empty; they are skipped.
	Blank int

	byID map[string]int
}

// Row is one job of a batch and the line of the file it came from.
type Row struct {
	Line int
	Job  wire.Job
}

// Problem is a row that cannot become a job: its line and why.
type Problem struct {
	Line   int
	Reason string
}

// String is "line N: reason".
func (p Problem) String() string { return fmt.Sprintf("line %d: %s", p.Line, p.Reason) }

// Duplicate is a row that names the device of an earlier row.
type Duplicate struct {
	Line, FirstLine int
	Device          string
}

// String says which earlier line names the same device.
func (d Duplicate) String() string {
	return fmt.Sprintf("line %d: device %s is already on line %d; submitted once", d.Line, d.Device, d.FirstLine)
}

// Options says how Read makes jobs from a file. The zero value reads a
// batch named after its devices, for source "batch", with the default
// prefix.
type Options struct {
	// Name is the batch name. Defaults to DeriveName of the rows.
	Name string
	// Source is the submitting system. Defaults to "batch".
	Source string
	// Names gives the subjects. Defaults to the default prefix.
	Names wire.Names
	// Format of the file. Defaults to Sniff.
	Format Format
	// Defaults fill the fields a row leaves empty.
	Defaults Defaults
}

// Defaults are the values a row gets for the fields it leaves empty.
type Defaults struct {
	TenantID    string
	Ticket      string
	RequestedBy string
	// NotAfter applies to every row: a job not started by then ends
	// expired.
	NotAfter *time.Time
}

// Read reads a batch file and makes its jobs. Rows that cannot become jobs
// are in Problems; the error is for a file that cannot be used at all (a
// *FileError for its header or encoding) or an unusable option.
func Read(r io.Reader, opts Options) (*Batch, error) {
	if opts.Source == "" {
		opts.Source = DefaultSource
	}
	if !wire.ValidToken(opts.Source) {
		return nil, fmt.Errorf("batch: source %q: want one subject token (letters, digits, '-', '_')", opts.Source)
	}
	if opts.Name != "" {
		if err := checkName(opts.Name); err != nil {
			return nil, err
		}
	}
	recs, err := readRecords(r, opts.Format)
	if err != nil {
		return nil, err
	}
	b := &Batch{Name: opts.Name, Source: opts.Source, byID: map[string]int{}}
	first := map[string]int{} // device key → line of its first row
	for _, rec := range recs {
		if rec.err == nil && rec.fields == nil {
			b.Blank++
			continue
		}
		j, err := rowJob(rec, opts.Defaults)
		if err != nil {
			b.Problems = append(b.Problems, Problem{Line: rec.line, Reason: err.Error()})
			continue
		}
		dk := deviceKey(rowTarget(&j))
		if line, dup := first[dk]; dup {
			b.Duplicates = append(b.Duplicates, Duplicate{Line: rec.line, FirstLine: line, Device: j.ManagedDeviceID})
			continue
		}
		first[dk] = rec.line
		b.Rows = append(b.Rows, Row{Line: rec.line, Job: j})
	}
	if b.Name == "" {
		b.Name, b.NameDerived = DeriveName(b.Rows), true
	}
	for i := range b.Rows {
		j := &b.Rows[i].Job
		j.ID = JobID(b.Name, rowTarget(j))
		j.IdempotencyKey = Key(b.Name, rowTarget(j))
		j.ReplyTo = ResultSubject(opts.Names, b.Source, b.Name, j.ID)
		b.byID[j.ID] = i
	}
	return b, nil
}

// Row returns the row of a job id (a replay's id finds its row too).
func (b *Batch) Row(jobID string) (Row, bool) {
	i, ok := b.byID[RowID(jobID)]
	if !ok {
		return Row{}, false
	}
	return b.Rows[i], true
}

// Tenants counts the distinct tenants the rows name, a row without one
// counting for the worker's default tenant. The rate limit applies per
// tenant, so a batch over several tenants can go faster.
func (b *Batch) Tenants() int {
	seen := map[string]bool{}
	for _, r := range b.Rows {
		seen[strings.ToLower(r.Job.TenantID)] = true
	}
	return max(len(seen), 1)
}
