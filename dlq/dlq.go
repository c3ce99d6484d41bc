// Package dlq reads the dead-letter queue (stream <PREFIX>_DLQ, subjects
// <prefix>.dlq.<source>) and replays dead letters as new jobs. It is the
// logic shared by `enqueue dlq list|replay` and the console's DLQ page, so
// that both choose, skip and name replays the same way.
//
// A replay is a new job: its id is the original id plus "-r<DLQ sequence>"
// (an earlier replay suffix replaced, batch.ReplayID), and a result sent
// to <prefix>.results.<source>[.<batch>].<old id> goes to the same place
// under the new id, so a batch counts the replay for its row. Replaying
// one dead letter twice gives the same id and key: it is stored once
// within the jobs stream's duplicate window, and at most one Graph call is
// made per key. The replay keeps the job's idempotency key unless
// Options.NewKey asks for "<key>/r<DLQ sequence>" (batch.ReplayKey).
package dlq

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/recoverpasscode/recoverpasscode/batch"
	"github.com/recoverpasscode/recoverpasscode/wire"
)

// Letter is one dead letter and its sequence in the DLQ stream, which
// names it in lists and in the ids of its replays.
type Letter struct {
	Seq uint64 `json:"dlqSequence"`
	wire.DeadLetter
}

// Selector chooses dead letters; the zero value chooses all of them.
type Selector struct {
	// Source keeps the dead letters of one source.
	Source string
	// Batch keeps those of one batch (idempotency key batch/<name>/...).
	Batch string
	// ID keeps those of one job id.
	ID string
	// Device keeps those of one managed device (case-insensitive).
	Device string
	// Status keeps those whose result has this status.
	Status wire.Status
}

// Check says what is wrong with a selector a person typed.
func (s Selector) Check() error {
	if s.Source != "" && !wire.ValidToken(s.Source) {
		return fmt.Errorf("source %q: want one subject token (letters, digits, '-', '_')", s.Source)
	}
	if s.Batch != "" && !batch.ValidName(s.Batch) {
		return fmt.Errorf("batch %q: use 1 to 64 letters, digits, '-' or '_'", s.Batch)
	}
	if s.Device != "" && !wire.IsGUID(s.Device) {
		return fmt.Errorf("device %q: a managed device id is a GUID", wire.Truncate(s.Device, 64))
	}
	return nil
}

// Empty reports whether the selector chooses every dead letter.
func (s Selector) Empty() bool {
	return s == Selector{}
}

// Match reports whether the selector chooses l (its source is chosen by
// the subject filter, Filter).
func (s Selector) Match(l Letter) bool {
	r := l.Result
	switch {
	case s.ID != "" && l.JobID != s.ID:
		return false
	case s.Batch != "" && (r == nil || !strings.HasPrefix(r.IdempotencyKey, batch.KeyPrefix(s.Batch))):
		return false
	case s.Device != "" && (r == nil || !strings.EqualFold(r.ManagedDeviceID, s.Device)):
		return false
	case s.Status != "" && (r == nil || r.Status != s.Status):
		return false
	}
	return true
}

// Filter is the DLQ subject filter of the selection.
func (s Selector) Filter(names wire.Names) string {
	if s.Source != "" {
		return names.DLQ(s.Source)
	}
	return names.DLQWildcard()
}

// Read reads the dead letters stored now that sel chooses, oldest first,
// through an ordered consumer.
func Read(ctx context.Context, js jetstream.JetStream, names wire.Names, sel Selector) ([]Letter, error) {
	r, err := batch.OpenStream(ctx, js, names.DLQStream(), sel.Filter(names))
	if err != nil {
		return nil, err
	}
	defer r.Close()
	var out []Letter
	for !r.CaughtUp() {
		msg, err := r.NextStored(ctx)
		if err != nil {
			return nil, fmt.Errorf("dlq: read dead letters: %w", err)
		}
		meta, err := msg.Metadata()
		if err != nil {
			return nil, fmt.Errorf("dlq: read dead letters: %w", err)
		}
		l := Letter{Seq: meta.Sequence.Stream}
		if json.Unmarshal(msg.Data(), &l.DeadLetter) != nil {
			continue // not a dead letter; nothing to list or replay
		}
		if sel.Match(l) {
			out = append(out, l)
		}
	}
	return out, nil
}

// Count returns how many dead letters the stream holds now.
func Count(ctx context.Context, js jetstream.JetStream, names wire.Names) (uint64, error) {
	s, err := js.Stream(ctx, names.DLQStream())
	if err != nil {
		return 0, fmt.Errorf("dlq: %w", err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("dlq: %w", err)
	}
	return info.State.Msgs, nil
}

// LatestPerJob keeps the latest dead letter of each job, a replay's
// counting for the job it replays (see batch.RowID): replaying an older one
// as well would act twice for one job. letters must be oldest first.
func LatestPerJob(letters []Letter) (latest []Letter, superseded int) {
	last := map[string]int{}
	for i, d := range letters {
		last[d.Source+"/"+batch.RowID(d.JobID)] = i
	}
	for i, d := range letters {
		if last[d.Source+"/"+batch.RowID(d.JobID)] == i {
			latest = append(latest, d)
		}
	}
	return latest, len(letters) - len(latest)
}
