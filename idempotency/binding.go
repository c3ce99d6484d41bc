package idempotency

import (
	"cmp"
	"errors"
	"fmt"
)

// ErrBound is matched (errors.Is) by the error of AcquireFor and Await for
// a key whose record is bound to another source or another target than
// the claim asked for. Nothing was written, and the key stays with the job
// that bound it.
var ErrBound = errors.New("idempotency: key bound to another source or target")

// Binding is what a key is bound to by the first job that uses it: the
// source that submitted the job and the target it acts on, each a
// canonical string of the caller's choosing (equal strings mean the same
// source or target). The record keeps it, and a later claim that asks for
// another is refused with a *BoundError, so that a key reused for another
// device, or by another source, is not answered from the first job's
// record nor taken over to act on something else.
//
// An empty field binds nothing: a record without one (written before keys
// were bound, or by a caller that binds nothing) accepts any claim, and a
// claim without one is accepted by any record. A Binding is a plain value.
type Binding struct {
	// Source names the submitting system.
	Source string
	// Target names what the key's action is done to.
	Target string
}

// refuses reports whether rec is bound to another source or target than b.
func (b Binding) refuses(rec *record) bool {
	return differ(b.Source, rec.Source) || differ(b.Target, rec.Target)
}

func differ(a, b string) bool { return a != "" && b != "" && a != b }

// bind sets rec's binding: prev's where prev (the record taken over) has
// one, else b's.
func (b Binding) bind(rec *record, prev *record) {
	rec.Source, rec.Target = b.Source, b.Target
	if prev != nil {
		rec.Source = cmp.Or(prev.Source, b.Source)
		rec.Target = cmp.Or(prev.Target, b.Target)
	}
}

// BoundError is the error for a claim refused because its key is bound to
// another source or target. errors.Is(err, ErrBound) matches it.
type BoundError struct {
	// Key is the idempotency key.
	Key string
	// JobID is the job whose record it is: the one that bound the key, or
	// a later job with the same binding that took it over.
	JobID string
	// Bound is what the record is bound to; Asked what the refused claim
	// asked for.
	Bound, Asked Binding
}

// Error says what the key is bound to and what was asked.
func (e *BoundError) Error() string {
	return fmt.Sprintf("key %q is bound by job %s to source %q and target %q, not source %q and target %q",
		e.Key, e.JobID, e.Bound.Source, e.Bound.Target, e.Asked.Source, e.Asked.Target)
}

// Is reports whether target is ErrBound.
func (e *BoundError) Is(target error) bool { return target == ErrBound }

func boundError(rec *record, asked Binding) error {
	return &BoundError{Key: rec.Key, JobID: rec.JobID, Bound: Binding{Source: rec.Source, Target: rec.Target}, Asked: asked}
}
