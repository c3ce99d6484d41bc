package quota

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/recoverpasscode/recoverpasscode/clock"
	"github.com/recoverpasscode/recoverpasscode/ratelimit"
	"github.com/recoverpasscode/recoverpasscode/wire"
)

// ErrNotHeld is returned by Release for a job that is not held (never was,
// or has gone on already).
var ErrNotHeld = errors.New("quota: the job is not held")

// errConflict means another writer changed a key between read and write.
var errConflict = errors.New("quota: key changed by another writer")

// maxConflicts bounds the compare-and-set retries of one operation.
const maxConflicts = 20

// Key prefixes in the bucket; see the package documentation.
const (
	windowPrefix   = "quota."
	admittedPrefix = "admitted."
	heldPrefix     = "held."
)

// Held is the record of a held job, the value at "held.<source>.<job>".
type Held struct {
	JobID           string `json:"jobId"`
	Source          string `json:"source"`
	TenantID        string `json:"tenantId,omitempty"`
	ManagedDeviceID string `json:"managedDeviceId,omitempty"`
	IdempotencyKey  string `json:"idempotencyKey,omitempty"`
	RequestedBy     string `json:"requestedBy,omitempty"`
	Ticket          string `json:"ticket,omitempty"`
	// Budget is the source's budget when the job was last held.
	Budget string `json:"budget"`
	// HeldAt is when the job was first held, LastHeldAt when last.
	HeldAt     time.Time `json:"heldAt"`
	LastHeldAt time.Time `json:"lastHeldAt"`
	// Holds counts the deliveries of the job spent held.
	Holds int `json:"holds"`
	// Until is when the budget allows another job, as last computed.
	Until time.Time `json:"until"`
	// Released says an operator released the job: it proceeds at its next
	// delivery whatever the budget says.
	Released   bool      `json:"released,omitempty"`
	ReleasedBy string    `json:"releasedBy,omitempty"`
	ReleasedAt time.Time `json:"releasedAt,omitzero"`
}

// Admission is what Admit decided for one delivery of a job.
type Admission struct {
	// Admitted says the job may go on to Graph; otherwise it is held and
	// should be handed back until RetryAt.
	Admitted bool
	RetryAt  time.Time
	// Holds counts the deliveries of the job spent held so far (the
	// worker's delivery bound does not count them).
	Holds int
	// NewlyHeld says this delivery put the job on hold; Freed that it let
	// a held job go on, Released that an operator's release did. Each is
	// an audit event.
	NewlyHeld, Freed, Released bool
	// Record is the held record, when the job is or was held.
	Record Held
}

// admitted is the value at "admitted.<source>.<job>".
type admitted struct {
	At    time.Time `json:"at"`
	Holds int       `json:"holds,omitempty"`
}

// window is the value at "quota.<source>".
type window struct {
	Rate   string     `json:"rate"`
	Grants [][2]int64 `json:"grants"` // [unix ms, jobs], oldest first
}

// Store keeps the source budgets and the held jobs in a KeyValue bucket
// (the worker's recoverpasscode_limits). It is safe for concurrent use.
type Store struct {
	js      jetstream.JetStream
	kv      jetstream.KeyValue
	limits  Limits
	now     func() time.Time // the server's time, when a clock is given
	toLocal func(time.Time) time.Time
}

// New returns a Store on the bucket kv of js enforcing limits. A Store
// with no limits (as `enqueue held` uses) only lists and releases.
func New(js jetstream.JetStream, kv jetstream.KeyValue, limits Limits) *Store {
	return &Store{js: js, kv: kv, limits: limits, now: time.Now, toLocal: func(t time.Time) time.Time { return t }}
}

// WithClock makes s keep its windows and records on c, the local clock
// corrected to the NATS server's (see package clock), as every worker of
// the fleet does, so that a host whose clock is off neither takes units
// from a window early nor holds a job late; Admission.RetryAt stays on
// the local clock. It returns s; call it before the Store is used.
func (s *Store) WithClock(c *clock.Clock) *Store {
	s.now, s.toLocal = c.Now, c.ToLocal
	return s
}

// Limits returns the budgets the Store enforces.
func (s *Store) Limits() Limits { return s.limits }

// Admit decides whether a delivery of job from source may go on to Graph:
// always for a source without a budget (without touching the bucket), and
// for a job already admitted or released; otherwise if the source's window
// has room, taking one unit of it. A job that may not is held: its record
// is created or updated, and RetryAt says when the budget will allow a job.
func (s *Store) Admit(ctx context.Context, source string, j *wire.Job) (Admission, error) {
	rate, limited := s.limits.Of(source)
	if !limited {
		return Admission{Admitted: true}, nil
	}
	if !wire.ValidToken(source) || !wire.ValidID(j.ID) {
		return Admission{}, fmt.Errorf("quota: source %q or job id %q cannot name a key", source, j.ID)
	}
	if a, ok, err := s.getAdmitted(ctx, source, j.ID); err != nil || ok {
		return Admission{Admitted: ok, Holds: a.Holds}, err
	}
	held, heldRev, err := s.getHeld(ctx, source, j.ID)
	if err != nil {
		return Admission{}, err
	}
	wasHeld := heldRev != 0
	if held.Released {
		return s.admit(ctx, source, j.ID, held, wasHeld, true)
	}
	retryAt, err := s.take(ctx, source, rate)
	if err != nil {
		return Admission{}, err
	}
	if retryAt.IsZero() {
		return s.admit(ctx, source, j.ID, held, wasHeld, false)
	}
	now := s.now().UTC()
	if !wasHeld {
		held = Held{JobID: j.ID, Source: source, TenantID: j.TenantID, ManagedDeviceID: j.ManagedDeviceID,
			IdempotencyKey: j.IdempotencyKey, RequestedBy: j.RequestedBy, Ticket: j.Ticket, HeldAt: now}
	}
	held.Budget, held.LastHeldAt, held.Until = rate.String(), now, retryAt.UTC()
	held.Holds++
	if err := s.putHeld(ctx, held, heldRev); err != nil {
		return Admission{}, err
	}
	return Admission{RetryAt: s.toLocal(retryAt), Holds: held.Holds, NewlyHeld: !wasHeld, Record: held}, nil
}

// admit records that the job may go on, and drops its held record.
func (s *Store) admit(ctx context.Context, source, id string, held Held, wasHeld, released bool) (Admission, error) {
	value, err := json.Marshal(admitted{At: s.now().UTC(), Holds: held.Holds})
	if err != nil {
		return Admission{}, err
	}
	if _, err := s.kv.Create(ctx, admittedKey(source, id), value); err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
		return Admission{}, fmt.Errorf("quota: record the admission of job %s: %w", id, err)
	}
	if wasHeld {
		if err := s.kv.Delete(ctx, heldKey(source, id)); err != nil {
			return Admission{}, fmt.Errorf("quota: drop the held record of job %s: %w", id, err)
		}
	}
	return Admission{Admitted: true, Holds: held.Holds, Freed: wasHeld, Released: released, Record: held}, nil
}

// take takes one unit of the source's window if it has room, and returns
// the zero time; else it returns when it will have room.
func (s *Store) take(ctx context.Context, source string, rate ratelimit.Rate) (time.Time, error) {
	key := windowPrefix + source
	step := max(rate.Per/100, time.Millisecond)
	for conflicts := 0; ; conflicts++ {
		var w window
		var rev uint64
		entry, err := s.kv.Get(ctx, key)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
		case err != nil:
			return time.Time{}, fmt.Errorf("quota: read %s: %w", key, err)
		default:
			if err := json.Unmarshal(entry.Value(), &w); err != nil {
				return time.Time{}, fmt.Errorf("quota: read %s (delete the key to reset it): %w", key, err)
			}
			rev = entry.Revision()
		}
		now := s.now()
		grants, used := live(w.Grants, now, rate.Per)
		if used >= rate.N {
			return freeAt(grants, used-rate.N+1, rate.Per), nil
		}
		at := now.Truncate(step).Add(step).UnixMilli() // rounded up: counts a little longer, never shorter
		if n := len(grants); n > 0 && grants[n-1][0] == at {
			grants[n-1][1]++
		} else {
			grants = append(grants, [2]int64{at, 1})
		}
		value, err := json.Marshal(window{Rate: rate.String(), Grants: grants})
		if err != nil {
			return time.Time{}, err
		}
		err = s.write(ctx, key, value, rev)
		if errors.Is(err, errConflict) && conflicts < maxConflicts {
			continue
		}
		return time.Time{}, err
	}
}

// Announce writes the Store's limits into the source windows already in
// the bucket: the rate of a window whose source the limits now budget
// differently, and no rate in the window of a source they no longer
// budget. A door that judges the windows by their rate (Room) then sees a
// raised, lowered or lifted budget as soon as a worker starts under it,
// rather than once a worker takes a unit under it, which for a lifted
// budget never happens. A source budgeted without a window needs nothing:
// Room finds room. Workers still running an older configuration write
// their rate back at their next take; the last writer wins. The service
// calls it at start; it lists the windows with ListKeysFiltered, whose
// watch the worker's NATS user may create and delete.
func (s *Store) Announce(ctx context.Context) error {
	lister, err := s.kv.ListKeysFiltered(ctx, windowPrefix+"*")
	if err != nil {
		return fmt.Errorf("quota: list the source windows: %w", err)
	}
	defer func() { _ = lister.Stop() }()
	for key := range lister.Keys() {
		if err := s.announce(ctx, key); err != nil {
			return err
		}
	}
	return nil
}

// announce sets the rate of the window at key to the Store's limit of its
// source, with a compare-and-set.
func (s *Store) announce(ctx context.Context, key string) error {
	want := ""
	if r, ok := s.limits.Of(strings.TrimPrefix(key, windowPrefix)); ok {
		want = r.String()
	}
	for conflicts := 0; ; conflicts++ {
		entry, err := s.kv.Get(ctx, key)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
			return nil
		case err != nil:
			return fmt.Errorf("quota: read %s: %w", key, err)
		}
		var w window
		if json.Unmarshal(entry.Value(), &w) != nil || w.Rate == want {
			return nil // a window take cannot read reports itself there
		}
		w.Rate = want
		value, err := json.Marshal(w)
		if err != nil {
			return err
		}
		err = s.write(ctx, key, value, entry.Revision())
		switch {
		case errors.Is(err, errConflict) && conflicts < maxConflicts:
			continue
		case err != nil:
			return fmt.Errorf("quota: write %s: %w", key, err)
		}
		return nil
	}
}

// Room says whether the window of source has room for one more job now,
// without taking it: a read-only look for a door in front of the workers
// (the gateway, which answers 429 rather than publish a job the workers
// would hold). It reads the window's value at "quota.<source>" and judges
// it by the rate written into it by the worker that last took a unit of
// it (window.Rate), not by the Store's limits: the workers own the
// budgets. A source with no window, or a window without a rate (written
// by a worker that recorded none) or whose rate cannot be read, has no
// budget known: ok, with the zero rate. Otherwise retryAt (on the local
// clock, as Admit's) is when the window will have room, for ok false.
//
// The window is judged on the Store's clock (WithClock, else the local
// one): a clock off by d lets a job in up to d early, which the workers
// then hold for up to d, or refuses one up to d too long.
func (s *Store) Room(ctx context.Context, source string) (ok bool, retryAt time.Time, rate ratelimit.Rate, err error) {
	if !wire.ValidToken(source) {
		return false, time.Time{}, rate, fmt.Errorf("quota: the source %q cannot name a key", source)
	}
	key := windowPrefix + source
	entry, err := s.kv.Get(ctx, key)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return true, time.Time{}, rate, nil
	case err != nil:
		return false, time.Time{}, rate, fmt.Errorf("quota: read %s: %w", key, err)
	}
	var w window
	if err := json.Unmarshal(entry.Value(), &w); err != nil {
		return false, time.Time{}, rate, fmt.Errorf("quota: read %s: %w", key, err)
	}
	if w.Rate == "" {
		return true, time.Time{}, rate, nil
	}
	r, err := ratelimit.ParseRate(w.Rate)
	if err != nil || r.Unlimited() || r.N <= 0 || r.Per <= 0 {
		return true, time.Time{}, ratelimit.Rate{}, nil
	}
	grants, used := live(w.Grants, s.now(), r.Per)
	if used < r.N {
		return true, time.Time{}, r, nil
	}
	return false, s.toLocal(freeAt(grants, used-r.N+1, r.Per)), r, nil
}

// HeldJob returns the held record of job id of source, and whether the job
// is held now (a record that an operator has released is returned with
// false: the job goes on at its next delivery).
func (s *Store) HeldJob(ctx context.Context, source, id string) (Held, bool, error) {
	if !wire.ValidToken(source) || !wire.ValidID(id) {
		return Held{}, false, fmt.Errorf("quota: source %q or job id %q cannot name a key", source, id)
	}
	h, rev, err := s.getHeld(ctx, source, id)
	return h, err == nil && rev != 0 && !h.Released, err
}

// live keeps the grants still inside the window ending at now, and counts
// their jobs.
func live(grants [][2]int64, now time.Time, per time.Duration) ([][2]int64, int) {
	horizon := now.Add(-per).UnixMilli()
	kept := make([][2]int64, 0, len(grants)+1)
	used := 0
	for _, g := range grants {
		if g[0] > horizon && g[1] > 0 {
			kept = append(kept, g)
			used += int(g[1])
		}
	}
	slices.SortFunc(kept, func(a, b [2]int64) int { return int(a[0] - b[0]) })
	return kept, used
}

// freeAt is when the oldest excess jobs of grants leave the window.
func freeAt(grants [][2]int64, excess int, per time.Duration) time.Time {
	for _, g := range grants {
		if excess -= int(g[1]); excess <= 0 {
			return time.UnixMilli(g[0]).Add(per)
		}
	}
	return time.Time{}
}

// List returns the held jobs of source ("" for every source), oldest
// first.
func (s *Store) List(ctx context.Context, source string) ([]Held, error) {
	keys, err := s.heldKeys(ctx, source)
	if err != nil {
		return nil, err
	}
	var out []Held
	for _, key := range keys {
		h, rev, err := s.getHeldKey(ctx, key)
		if err != nil {
			return nil, err
		}
		if rev != 0 {
			out = append(out, h)
		}
	}
	slices.SortStableFunc(out, func(a, b Held) int { return a.HeldAt.Compare(b.HeldAt) })
	return out, nil
}

// Counts returns how many jobs each source has held.
func (s *Store) Counts(ctx context.Context) (map[string]int, error) {
	keys, err := s.heldKeys(ctx, "")
	if err != nil {
		return nil, err
	}
	counts := map[string]int{}
	for _, key := range keys {
		source, _, _ := strings.Cut(strings.TrimPrefix(key, heldPrefix), ".")
		counts[source]++
	}
	return counts, nil
}

// Release marks a held job released, by whom (for the record): it goes on
// at its next delivery whatever its source's budget says. It returns
// ErrNotHeld for a job that is not held.
func (s *Store) Release(ctx context.Context, source, jobID, by string) (Held, error) {
	if !wire.ValidToken(source) || !wire.ValidID(jobID) {
		return Held{}, fmt.Errorf("quota: release: source %q or job id %q is not valid", source, jobID)
	}
	for conflicts := 0; ; conflicts++ {
		h, rev, err := s.getHeld(ctx, source, jobID)
		switch {
		case err != nil:
			return Held{}, err
		case rev == 0:
			return Held{}, ErrNotHeld
		case h.Released:
			return h, nil
		}
		h.Released, h.ReleasedBy, h.ReleasedAt = true, by, s.now().UTC()
		err = s.putHeld(ctx, h, rev)
		if errors.Is(err, errConflict) && conflicts < maxConflicts {
			continue
		}
		return h, err
	}
}

// heldKeys lists the keys of the held records of source ("" for every
// source). It reads the bucket's stream through an ordered pull consumer,
// the last message of each key, rather than with ListKeys, whose watch
// deletes its consumer when done: the operator may create consumers on
// the held records, not delete them.
func (s *Store) heldKeys(ctx context.Context, source string) ([]string, error) {
	prefix := "$KV." + s.kv.Bucket() + "."
	filter := prefix + heldPrefix + ">"
	if source != "" {
		filter = prefix + heldPrefix + source + ".*"
	}
	cons, err := s.js.OrderedConsumer(ctx, "KV_"+s.kv.Bucket(), jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{filter},
		DeliverPolicy:  jetstream.DeliverLastPerSubjectPolicy,
		HeadersOnly:    true,
	})
	if err != nil {
		return nil, err
	}
	info := cons.CachedInfo()
	if info == nil || info.NumPending == 0 {
		return nil, nil
	}
	it, err := cons.Messages()
	if err != nil {
		return nil, err
	}
	defer it.Stop()
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	var keys []string
	for range info.NumPending {
		msg, err := it.Next()
		if err != nil {
			return nil, err
		}
		switch msg.Headers().Get("KV-Operation") {
		case "DEL", "PURGE":
			continue
		}
		keys = append(keys, strings.TrimPrefix(msg.Subject(), prefix))
	}
	return keys, nil
}

func (s *Store) getAdmitted(ctx context.Context, source, id string) (admitted, bool, error) {
	entry, err := s.kv.Get(ctx, admittedKey(source, id))
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return admitted{}, false, nil
	case err != nil:
		return admitted{}, false, fmt.Errorf("quota: read the admission of job %s: %w", id, err)
	}
	var a admitted
	_ = json.Unmarshal(entry.Value(), &a) // an unreadable marker still admits
	return a, true, nil
}

func (s *Store) getHeld(ctx context.Context, source, id string) (Held, uint64, error) {
	return s.getHeldKey(ctx, heldKey(source, id))
}

// getHeldKey reads a held record; revision 0 means there is none.
func (s *Store) getHeldKey(ctx context.Context, key string) (Held, uint64, error) {
	entry, err := s.kv.Get(ctx, key)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return Held{}, 0, nil
	case err != nil:
		return Held{}, 0, fmt.Errorf("quota: read %s: %w", key, err)
	}
	var h Held
	if err := json.Unmarshal(entry.Value(), &h); err != nil {
		return Held{}, 0, fmt.Errorf("quota: read %s: %w", key, err)
	}
	return h, entry.Revision(), nil
}

func (s *Store) putHeld(ctx context.Context, h Held, rev uint64) error {
	value, err := json.Marshal(h)
	if err != nil {
		return err
	}
	if err := s.write(ctx, heldKey(h.Source, h.JobID), value, rev); err != nil {
		return fmt.Errorf("quota: record held job %s: %w", h.JobID, err)
	}
	return nil
}

// write stores value at key if it is still at rev (absent for 0).
func (s *Store) write(ctx context.Context, key string, value []byte, rev uint64) error {
	var err error
	if rev == 0 {
		_, err = s.kv.Create(ctx, key, value)
	} else {
		_, err = s.kv.Update(ctx, key, value, rev)
	}
	if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return errConflict
	}
	return err
}

func admittedKey(source, id string) string { return admittedPrefix + source + "." + id }
func heldKey(source, id string) string     { return heldPrefix + source + "." + id }
