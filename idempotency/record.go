package idempotency

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/nats-io/nats.go/jetstream"
)

// MaxKeyLen is the longest idempotency key, in bytes, that the store
// accepts: room for a 256-byte key from a job with a scope such as its
// tenant in front.
const MaxKeyLen = 512

// MaxOutcomeLen is the largest outcome blob, in bytes, that Complete stores.
// BucketConfig sets the bucket's MaxValueSize a little above it so that the
// record around the outcome always fits.
const MaxOutcomeLen = 48 << 10

// DefaultTTL is how long a record lives after its last write when
// BucketConfig is given no TTL.
const DefaultTTL = 24 * time.Hour

// recordVersion is written into every record so that a later schema can tell
// old records apart.
const recordVersion = 1

// The two phases of a record.
const (
	phaseClaimed = "claimed"
	phaseDone    = "done"
)

// record is the JSON value stored under a key. Operators read it with
// `nats kv get recoverpasscode_keys k.<sha256>`, so field names are stable.
type record struct {
	Version int    `json:"v"`
	Key     string `json:"key"`
	Phase   string `json:"phase"`
	Owner   string `json:"owner"`
	JobID   string `json:"jobId"`
	// Source and Target are the key's Binding, set by its first job and
	// kept by every later owner; absent from records written before keys
	// were bound (an older worker keeps no binding either).
	Source string `json:"source,omitempty"`
	Target string `json:"target,omitempty"`
	// Token identifies one acquisition, so that an owner can recognise its
	// own write when the reply to it was lost (an owner name alone cannot:
	// the same worker may take the key again after losing it).
	Token      string    `json:"token"`
	LeaseUntil time.Time `json:"leaseUntil"`
	// Released means the owner handed the key back while a Graph call may
	// have happened; the next Claim takes it over at once.
	Released bool `json:"released,omitempty"`
	Attempts int  `json:"attempts"`
	// Calling is sticky: once an owner was about to call Graph, every later
	// owner learns that a call may already have taken effect.
	Calling     bool            `json:"calling"`
	Takeovers   int             `json:"takeovers,omitempty"`
	ClaimedAt   time.Time       `json:"claimedAt"`
	Status      string          `json:"status,omitempty"`
	Outcome     json.RawMessage `json:"outcome,omitempty"`
	CompletedAt time.Time       `json:"completedAt,omitzero"`
}

// live reports whether another claimer must leave the record alone at now.
func (r *record) live(now time.Time) bool {
	return r.Phase == phaseClaimed && !r.Released && now.Before(r.LeaseUntil)
}

func encodeRecord(r *record) ([]byte, error) {
	b, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("idempotency: encode record: %w", err)
	}
	return b, nil
}

func decodeRecord(data []byte) (record, error) {
	var r record
	if err := json.Unmarshal(data, &r); err != nil {
		return record{}, fmt.Errorf("idempotency: decode record: %w", err)
	}
	if r.Phase != phaseClaimed && r.Phase != phaseDone {
		return record{}, fmt.Errorf("idempotency: decode record: unknown phase %q", r.Phase)
	}
	return r, nil
}

// KVKey returns the bucket key that holds the record for an idempotency key:
// "k." followed by the lowercase hex SHA-256 of the key. Idempotency keys are
// free text while bucket keys allow only [-/_=.a-zA-Z0-9], so the key is
// hashed; the record keeps the original for operators, who can find it with
// `printf %s "$KEY" | sha256sum`. To keep tenants or sources apart, fold the
// scope into the key before calling Claim (for example tenantID + "/" + key).
func KVKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return "k." + hex.EncodeToString(sum[:])
}

// ValidateKey reports whether key can be used as an idempotency key: 1 to
// MaxKeyLen bytes of valid UTF-8 without control characters. The error wraps
// ErrInvalidKey.
func ValidateKey(key string) error {
	switch {
	case key == "":
		return fmt.Errorf("idempotency: %w: empty", ErrInvalidKey)
	case len(key) > MaxKeyLen:
		return fmt.Errorf("idempotency: %w: %d bytes, at most %d allowed", ErrInvalidKey, len(key), MaxKeyLen)
	case !utf8.ValidString(key):
		return fmt.Errorf("idempotency: %w: not valid UTF-8", ErrInvalidKey)
	}
	for _, r := range key {
		if !unicode.IsPrint(r) && r != ' ' {
			return fmt.Errorf("idempotency: %w: contains the non-printable character %U", ErrInvalidKey, r)
		}
	}
	return nil
}

// BucketConfig returns the configuration of the bucket that holds the
// records, for jetstream's CreateKeyValue or CreateOrUpdateKeyValue. ttl is
// how long a record lives after its last write (the bucket's MaxAge, which
// is also how long a completed key is answered from its record); zero means
// DefaultTTL. replicas is the stream's replica count; zero means 1. Records
// keep no history: only the latest revision matters for compare-and-set.
func BucketConfig(bucket string, ttl time.Duration, replicas int) jetstream.KeyValueConfig {
	if ttl <= 0 {
		ttl = DefaultTTL
	}
	if replicas <= 0 {
		replicas = 1
	}
	return jetstream.KeyValueConfig{
		Bucket:       bucket,
		Description:  "recoverpasscode idempotency records, one per idempotency key",
		History:      1,
		TTL:          ttl,
		MaxValueSize: MaxOutcomeLen + 16<<10,
		Storage:      jetstream.FileStorage,
		Replicas:     replicas,
	}
}
