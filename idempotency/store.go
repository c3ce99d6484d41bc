// Package idempotency is the lease protocol that keeps an idempotency key
// to at most one Graph call that takes effect, across any number of
// workers, redeliveries and re-submissions, while the key's record lives in
// a JetStream KeyValue bucket. A change to how a key is claimed, marked,
// renewed, taken over, completed or released goes here, and only here.
//
// One entry point: Store.Acquire returns the key's stored outcome (Done:
// answer the job from it), another worker's live lease (Busy: wait with
// Await), or a Lease. Under the Lease, Call makes each call: it marks the
// record calling first, so that a worker dying during the call leaves a
// record that tells the next owner a call may have happened, and afterwards
// records whether the call took effect. Complete stores the outcome, which
// later jobs with the same key are answered from; Release gives the key
// back unfinished. Acquire marks the record calling in its own write, so a
// job costs two writes: the claim and the outcome. Every write is a
// compare-and-set on the key's revision (kv.Create, kv.Update, a delete at a
// revision), so two workers can never both believe they own a key.
//
// AcquireFor also binds the key to its first job's source and target
// (Binding): a later claim that asks for another is refused (ErrBound), so
// a key names one action, not merely one call.
//
// Clocks: leases are instants written into the record by the owner and
// judged by the reader. With Config.Clock (as the worker runs), both read
// the NATS server's clock (see package clock), so a reader whose own clock
// runs seconds ahead does not take a live lease over early, nor does an
// owner whose clock runs behind write a lease that others find already
// expired; what remains of the skew is half a KV round trip. Without one,
// each reads its own wall clock, and a reader ahead by d takes an expired
// lease over d early. The clock only decides when a key may be taken over;
// the compare-and-set decides who owns it, so an owner whose lease passed
// unnoticed keeps the key until someone actually takes it. The lease also
// bounds a Graph attempt: keep each attempt's deadline well below
// Config.Lease, because Call extends the lease only once, before the call.
//
// The one window the record cannot close is a worker that dies after Graph
// answered and before Complete. The next owner then sees
// Claim.PreviousCalling and must mark its outcome uncertain.
package idempotency

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/recoverpasscode/recoverpasscode/clock"
)

// DefaultLease is the lease a claim holds when Config.Lease is zero.
const DefaultLease = 30 * time.Second

// DefaultOutcomeRetry is how long Complete retries a failed write of the
// outcome when Config.OutcomeRetry is zero.
const DefaultOutcomeRetry = 10 * time.Second

// maxRounds bounds the re-reads after compare-and-set conflicts in one call.
// Each round follows a write by someone else, so the bound is only reached
// under pathological contention; it turns a bug into an error, not a hang.
const maxRounds = 32

// Config configures a Store. The zero value works.
type Config struct {
	// Owner names this worker in the records it writes, for operators and
	// for Busy claims elsewhere. Defaults to "hostname-pid".
	Owner string
	// Lease is how long a claim stays ours without a renewal (Renew,
	// KeepAlive, Call). Defaults to DefaultLease (30s).
	Lease time.Duration
	// OutcomeRetry is how long, after its first failed write, Complete
	// retries storing an outcome. Defaults to DefaultOutcomeRetry (10s); a
	// negative value makes Complete write once.
	OutcomeRetry time.Duration
	// Clock is the time leases are written and judged on: the local clock
	// corrected to the NATS server's, shared with the rate limiter (see
	// package clock). Nil reads the local wall clock, which is right only
	// as far as the workers' clocks agree.
	Clock *clock.Clock
	// Logger receives takeovers and lost claims. Defaults to no logging.
	Logger zerolog.Logger
}

// Store reads and writes idempotency records in one bucket. It is safe for
// concurrent use by any number of goroutines.
type Store struct {
	kv           jetstream.KeyValue
	owner        string
	lease        time.Duration
	outcomeRetry time.Duration
	clock        *clock.Clock // nil: the local clock
	log          zerolog.Logger

	creates, gets, updates, deletes, watches atomic.Uint64
	conflicts, takeovers                     atomic.Uint64
}

// New returns a Store over kv, a bucket created with BucketConfig.
func New(kv jetstream.KeyValue, cfg Config) *Store {
	if cfg.Owner == "" {
		host, _ := os.Hostname()
		cfg.Owner = host + "-" + strconv.Itoa(os.Getpid())
	}
	if cfg.Lease <= 0 {
		cfg.Lease = DefaultLease
	}
	if cfg.OutcomeRetry == 0 {
		cfg.OutcomeRetry = DefaultOutcomeRetry
	}
	return &Store{kv: kv, owner: cfg.Owner, lease: cfg.Lease, outcomeRetry: cfg.OutcomeRetry, clock: cfg.Clock, log: cfg.Logger}
}

// now is the time leases are written and judged on: Config.Clock's, else
// the local clock's.
func (s *Store) now() time.Time {
	if s.clock != nil {
		return s.clock.Now()
	}
	return time.Now()
}

// until is how long until t, a time on the Store's clock.
func (s *Store) until(t time.Time) time.Duration { return t.Sub(s.now()) }

// Owner returns the name this Store writes into the records it owns.
func (s *Store) Owner() string { return s.owner }

// Stats counts the Store's KeyValue operations since New. Each counter is
// one call on the bucket; a Create on a key that exists, or on a key whose
// latest revision is a delete marker, takes one or two more round trips
// inside nats.go than it counts here.
type Stats struct {
	Creates, Gets, Updates, Deletes, Watches uint64
	// Conflicts counts compare-and-set writes that lost to another writer.
	Conflicts uint64
	// Takeovers counts expired or released leases this Store took over.
	Takeovers uint64
}

// Ops returns the number of KeyValue operations.
func (st Stats) Ops() uint64 {
	return st.Creates + st.Gets + st.Updates + st.Deletes + st.Watches
}

// Stats returns the Store's counters. It is safe for concurrent use.
func (s *Store) Stats() Stats {
	return Stats{
		Creates: s.creates.Load(), Gets: s.gets.Load(), Updates: s.updates.Load(),
		Deletes: s.deletes.Load(), Watches: s.watches.Load(),
		Conflicts: s.conflicts.Load(), Takeovers: s.takeovers.Load(),
	}
}

// Reasons for another round of Claim: a compare-and-set lost, and the key
// either still exists (read it again) or is gone (create it again).
var (
	errConflict = errors.New("idempotency: revision conflict")
	errGone     = errors.New("idempotency: record vanished")
)

// Acquire takes key for the job jobID, to call under it at once. It
// returns a Claim that is Acquired, with its Lease, when the key was free or
// held under a lease that expired or was released (then TakenOver is set);
// Done, with the stored outcome, when the key was completed; Busy, with the
// holder and the end of its lease, when another claim, even one of this
// Store, holds a live lease. A Busy caller waits with Await.
//
// An acquired record is marked calling in the same write, so the lease's
// first Call writes nothing: a new key costs one write. The price is that a
// worker dying between Acquire and its call looks to the next owner like
// one that died during the call (PreviousCalling). A Release, or a first
// Call that made no call, undoes the mark as if it had never been made.
//
// Acquire returns promptly when ctx is cancelled and is safe for
// concurrent use.
func (s *Store) Acquire(ctx context.Context, key, jobID string) (Claim, error) {
	return s.claim(ctx, key, jobID, Binding{}, true)
}

// AcquireFor is Acquire for a job that binds the key to b: a new record
// stores b, and a record bound to another source or target is neither
// answered from nor taken over: AcquireFor writes nothing and returns a
// *BoundError (errors.Is(err, ErrBound)). A record without a binding is
// treated as Acquire treats it, and a takeover of one stores b.
func (s *Store) AcquireFor(ctx context.Context, key, jobID string, b Binding) (Claim, error) {
	return s.claim(ctx, key, jobID, b, true)
}

func (s *Store) claim(ctx context.Context, key, jobID string, b Binding, arm bool) (Claim, error) {
	if err := ValidateKey(key); err != nil {
		return Claim{}, err
	}
	kvKey := KVKey(key)
	if s.clock != nil {
		// Leases are judged on the server's clock: its offset must have
		// been measured (an older measurement will do while NATS is away).
		if err := s.clock.Fresh(ctx); err != nil {
			return Claim{}, fmt.Errorf("idempotency: claim: %w", err)
		}
	}
	tryCreate := true
	for range maxRounds {
		if err := ctx.Err(); err != nil {
			return Claim{}, fmt.Errorf("idempotency: claim: %w", err)
		}
		c, err := s.claimRound(ctx, key, kvKey, jobID, b, tryCreate, arm)
		if errors.Is(err, errConflict) || errors.Is(err, errGone) {
			s.conflicts.Add(1)
			tryCreate = errors.Is(err, errGone)
			continue
		}
		if err != nil {
			return Claim{}, fmt.Errorf("idempotency: claim: %w", err)
		}
		return c, nil
	}
	return Claim{}, fmt.Errorf("idempotency: claim: gave up after %d conflicting writes", maxRounds)
}

// claimRound makes one attempt: create the record, else read it and answer
// from it or take it over, unless it is bound elsewhere. arm marks an
// acquired record calling.
func (s *Store) claimRound(ctx context.Context, key, kvKey, jobID string, b Binding, tryCreate, arm bool) (Claim, error) {
	now := s.now()
	if tryCreate {
		rec := s.newRecord(key, jobID, now)
		b.bind(&rec, nil)
		if arm {
			rec.Calling = true
			rec.Attempts = 1
		}
		c, err := s.create(ctx, kvKey, rec, arm)
		if !isRevisionConflict(err) {
			return c, err
		}
	}
	cur, rev, err := s.get(ctx, kvKey)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return Claim{}, errGone
	}
	if err != nil {
		return Claim{}, err
	}
	if cur.Key != key {
		return Claim{}, fmt.Errorf("record %s holds another key", kvKey)
	}
	if b.refuses(&cur) {
		return Claim{}, boundError(&cur, b)
	}
	if cur.Phase == phaseDone {
		return doneClaim(cur, jobID), nil
	}
	if cur.live(s.now()) {
		c := busyClaim(cur, jobID)
		c.arm, c.binding = arm, b
		return c, nil
	}
	return s.takeOver(ctx, kvKey, rev, cur, jobID, b, arm)
}

func (s *Store) newRecord(key, jobID string, now time.Time) record {
	return record{
		Version: recordVersion, Key: key, Phase: phaseClaimed,
		Owner: s.owner, JobID: jobID, Token: newToken(),
		LeaseUntil: now.Add(s.lease).UTC(), ClaimedAt: now.UTC(),
	}
}

// newToken returns 128 random bits as hex: unique per acquisition across
// the fleet, which is all a token must be (it guards nothing secret), from
// the runtime's generator, seeded by the OS, without a system call.
func newToken() string {
	var b [16]byte
	binary.LittleEndian.PutUint64(b[:8], rand.Uint64())
	binary.LittleEndian.PutUint64(b[8:], rand.Uint64())
	return hex.EncodeToString(b[:])
}

func (s *Store) create(ctx context.Context, kvKey string, rec record, armed bool) (Claim, error) {
	data, err := encodeRecord(&rec)
	if err != nil {
		return Claim{}, err
	}
	s.creates.Add(1)
	rev, err := s.kv.Create(ctx, kvKey, data)
	if err != nil {
		return Claim{}, err
	}
	return s.acquiredClaim(kvKey, rev, rec, armed, false), nil
}

// takeOver replaces an expired or released claim with ours, keeping the
// attempt count, the sticky calling flag and the binding (b's if prev has
// none); arm marks it calling too.
func (s *Store) takeOver(ctx context.Context, kvKey string, rev uint64, prev record, jobID string, b Binding, arm bool) (Claim, error) {
	now := s.now()
	rec := s.newRecord(prev.Key, jobID, now)
	b.bind(&rec, &prev)
	rec.Attempts = prev.Attempts
	rec.Calling = prev.Calling
	if arm {
		rec.Calling = true
		rec.Attempts++
	}
	rec.Takeovers = prev.Takeovers + 1
	data, err := encodeRecord(&rec)
	if err != nil {
		return Claim{}, err
	}
	s.updates.Add(1)
	newRev, err := s.kv.Update(ctx, kvKey, data, rev)
	if isRevisionConflict(err) {
		return Claim{}, errConflict
	}
	if err != nil {
		return Claim{}, err
	}
	s.takeovers.Add(1)
	c := s.acquiredClaim(kvKey, newRev, rec, arm, prev.Calling)
	c.TakenOver = true
	c.PreviousOwner = prev.Owner
	c.PreviousJobID = prev.JobID
	c.PreviousCalling = prev.Calling
	ev := s.log.Info()
	if prev.Calling {
		ev = s.log.Warn()
	}
	ev.Str("key", prev.Key).Str("job_id", jobID).Str("previous_owner", prev.Owner).
		Str("previous_job_id", prev.JobID).Bool("previous_calling", prev.Calling).
		Bool("released", prev.Released).Int("attempt", prev.Attempts).
		Msg("idempotency: took over a key from a previous owner")
	return c, nil
}

func (s *Store) get(ctx context.Context, kvKey string) (record, uint64, error) {
	s.gets.Add(1)
	e, err := s.kv.Get(ctx, kvKey)
	if err != nil {
		return record{}, 0, err
	}
	rec, err := decodeRecord(e.Value())
	if err != nil {
		return record{}, 0, err
	}
	return rec, e.Revision(), nil
}
