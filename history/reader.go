package history

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/recoverpasscode/recoverpasscode/wire"
)

const (
	// DefaultLimit is the number of events Device returns when asked for
	// zero or fewer.
	DefaultLimit = 100
	// MaxLimit is the most events one call to Device returns.
	MaxLimit = 1000
	// defaultTimeout bounds each request when the context has no deadline
	// and the JetStream context sets no default.
	defaultTimeout = 5 * time.Second
	// maxProbes bounds the search for the start of a chatty device's
	// newest events (bisection alone needs 21 for a million sequences);
	// past it the reader reads from the best start found.
	maxProbes = 48
)

// ErrInvalidID is returned, wrapped, for a tenant or device id that is not
// a GUID. Such input is never used in a subject.
var ErrInvalidID = errors.New("history: not a GUID")

// ErrNoDirectGet is returned, wrapped, when no server answers a direct get
// on the audit stream: it is missing, or was created without AllowDirect
// by an older worker that has not been upgraded yet.
var ErrNoDirectGet = errors.New("history: the audit stream does not answer direct gets (is it there, with allow_direct?)")

// Reader reads the audit trail by device. It is safe for concurrent use.
type Reader struct {
	js         jetstream.JetStream
	names      wire.Names
	getSubject string
}

// New returns a Reader of the audit trail by device.
func New(js jetstream.JetStream, names wire.Names) *Reader {
	return &Reader{js: js, names: names, getSubject: apiPrefix(js) + "DIRECT.GET." + names.AuditStream()}
}

// apiPrefix is the JetStream API prefix js sends its requests to,
// "$JS.API." unless a domain or another prefix is configured.
func apiPrefix(js jetstream.JetStream) string {
	o := js.Options()
	switch {
	case o.Domain != "":
		return "$JS." + o.Domain + ".API."
	case o.APIPrefix != "" && !strings.HasSuffix(o.APIPrefix, "."):
		return o.APIPrefix + "."
	case o.APIPrefix != "":
		return o.APIPrefix
	default:
		return jetstream.DefaultAPIPrefix
	}
}

// Device returns up to limit audit events for one device in one tenant,
// across all sources, newest first. Both ids must be GUIDs (either case);
// anything else is an error wrapping ErrInvalidID. A limit of zero or less
// means DefaultLimit; more than MaxLimit means MaxLimit. A device without
// events has an empty history and no error.
func (r *Reader) Device(ctx context.Context, tenantID, deviceID string, limit int) ([]wire.AuditEvent, error) {
	if !wire.IsGUID(tenantID) {
		return nil, fmt.Errorf("history: tenant id %q: %w", wire.Truncate(tenantID, 64), ErrInvalidID)
	}
	if !wire.IsGUID(deviceID) {
		return nil, fmt.Errorf("history: managed device id %q: %w", wire.Truncate(deviceID, 64), ErrInvalidID)
	}
	switch {
	case limit <= 0:
		limit = DefaultLimit
	case limit > MaxLimit:
		limit = MaxLimit
	}
	msgs, err := r.newest(ctx, r.names.AuditOfDevice(tenantID, deviceID), limit)
	if err != nil {
		return nil, err
	}
	events := make([]wire.AuditEvent, len(msgs))
	for i, m := range msgs {
		// Newest first: the last message read is the first event.
		if err := json.Unmarshal(m.data, &events[len(msgs)-1-i]); err != nil {
			return nil, fmt.Errorf("history: audit event %d: %w", m.seq, err)
		}
	}
	return events, nil
}

// newest returns the last limit messages matching filter, oldest first.
func (r *Reader) newest(ctx context.Context, filter string, limit int) ([]stored, error) {
	// The usual device has few events: one batch from the start holds
	// them all, and says how many more there are if it does not.
	msgs, more, err := r.batch(ctx, filter, 0, limit)
	if err != nil || more == 0 {
		return msgs, err
	}
	start, err := r.startOfNewest(ctx, filter, msgs[0].seq, uint64(len(msgs))+more, limit)
	if err != nil {
		return nil, err
	}
	return r.readTail(ctx, filter, start, limit)
}

// startOfNewest finds a sequence with at least limit, and if it can at
// most 2×limit, of filter's messages at or after it, given the sequence
// of the first and their total. Counts fall as the start moves towards
// the newest message, so a search between a start known to have too many
// and one known to have too few converges: by interpolation, which finds
// evenly spread events in a probe or two, and by bisection whenever
// interpolation moved the same bound twice running (bursts), which bounds
// the probes by the bits of the sequence range.
func (r *Reader) startOfNewest(ctx context.Context, filter string, first, total uint64, limit int) (uint64, error) {
	want, most := uint64(limit), uint64(2*limit)
	if total <= most {
		return first, nil
	}
	last, err := r.lastSeq(ctx, filter)
	if err != nil {
		return 0, err
	}
	target := (want + most) / 2
	// lo has more than 2×limit messages at or after it (loCount), hi fewer
	// than limit (hiCount: the newest one alone, at last).
	lo, loCount := first, total
	hi, hiCount := last, uint64(1)
	var moved, movedBefore byte
	for range maxProbes {
		if hi-lo <= 1 {
			break
		}
		start := lo + (hi-lo)/2
		if moved == 0 || moved != movedBefore {
			start = lo + uint64(float64(hi-lo)*float64(loCount-target)/float64(loCount-hiCount))
		}
		start = min(max(start, lo+1), hi-1)
		n, err := r.countFrom(ctx, filter, start)
		if err != nil {
			return 0, err
		}
		movedBefore = moved
		switch {
		case n < want:
			hi, hiCount, moved = start, n, 'h'
		case n > most:
			lo, loCount, moved = start, n, 'l'
		default:
			return start, nil
		}
	}
	return lo, nil
}

// readTail reads filter's messages from start on and keeps the last limit.
func (r *Reader) readTail(ctx context.Context, filter string, start uint64, limit int) ([]stored, error) {
	var tail []stored
	for {
		msgs, more, err := r.batch(ctx, filter, start, MaxLimit)
		if err != nil {
			return nil, err
		}
		tail = append(tail, msgs...)
		if len(tail) > limit {
			tail = slices.Delete(tail, 0, len(tail)-limit)
		}
		if more == 0 || len(msgs) == 0 {
			return tail, nil
		}
		start = msgs[len(msgs)-1].seq + 1
	}
}
