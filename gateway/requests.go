package gateway

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/recoverpasscode/recoverpasscode/wire"
)

// requestVersion is written into every record so that a later schema can
// tell old ones apart.
const requestVersion = 1

// request is the record of one job submitted over HTTP, in the requests
// bucket under <source>.<jobId>, kept the bucket's TTL. It makes a retried
// POST find its job (and refuse another body under the same key), and lets
// GET answer "queued" before the result exists.
type request struct {
	Version         int       `json:"v"`
	JobID           string    `json:"jobId"`
	Source          string    `json:"source"`
	IdempotencyKey  string    `json:"idempotencyKey"`
	Fingerprint     string    `json:"fingerprint"`
	SubmittedAt     time.Time `json:"submittedAt"`
	TenantID        string    `json:"tenantId,omitempty"`
	ManagedDeviceID string    `json:"managedDeviceId"`
	Ticket          string    `json:"ticket,omitempty"`
	RequestedBy     string    `json:"requestedBy,omitempty"`
}

// requestKey is the record's key in the bucket. Source and job id are both
// subject tokens, so the key is valid and a source's records share the
// prefix "<source>.".
func requestKey(source, jobID string) string { return source + "." + jobID }

// fingerprint identifies what a job asks for: the SHA-256 of its JSON once
// decoded, validated and completed, so that the same job sent with other
// whitespace or field order has the same fingerprint.
func fingerprint(j wire.Job) string {
	if j.NotAfter != nil {
		t := j.NotAfter.UTC()
		j.NotAfter = &t
	}
	data, _ := json.Marshal(j) // a Job always encodes
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

func newRequest(source string, j *wire.Job, now time.Time) request {
	return request{
		Version: requestVersion, JobID: j.ID, Source: source, IdempotencyKey: j.IdempotencyKey,
		Fingerprint: fingerprint(*j), SubmittedAt: now.UTC(),
		TenantID: j.TenantID, ManagedDeviceID: j.ManagedDeviceID, Ticket: j.Ticket, RequestedBy: j.RequestedBy,
	}
}

// errConflict: a record of the same job id holds another fingerprint.
var errConflict = errors.New("gateway: the job id was submitted with another body")

// record writes rec unless a record of its job exists, and returns the
// record that is stored: rec itself (created true), or the earlier one when
// it has the same fingerprint. The first writer wins; every later one with
// the same body gets the first one's record, with another body
// errConflict.
func (st *store) record(ctx context.Context, rec request) (stored request, created bool, err error) {
	kv, err := st.bucket(ctx)
	if err != nil {
		return rec, false, err
	}
	data, err := json.Marshal(rec)
	if err != nil {
		return rec, false, fmt.Errorf("gateway: encode request: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, st.timeout)
	defer cancel()
	key := requestKey(rec.Source, rec.JobID)
	// A record found to exist may be gone a moment later (its TTL ran out,
	// or a replica had not seen it yet): then create it again.
	for range 3 {
		if err := st.connected(); err != nil {
			return rec, false, err
		}
		_, err := kv.Create(ctx, key, data)
		if err == nil {
			return rec, true, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return rec, false, st.wrap(err)
		}
		entry, err := kv.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return rec, false, st.wrap(err)
		}
		var old request
		if err := json.Unmarshal(entry.Value(), &old); err != nil {
			return rec, false, fmt.Errorf("gateway: the record %s is not a request: %w", key, err)
		}
		if old.Fingerprint != rec.Fingerprint {
			return old, false, errConflict
		}
		return old, false, nil
	}
	return rec, false, fmt.Errorf("%w: the record %s kept changing", errUnavailable, key)
}

// forget deletes the record of a job that was never accepted and cannot
// be retried (its id was random), so that it does not show as queued.
func (st *store) forget(ctx context.Context, rec request) {
	kv, err := st.bucket(ctx)
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), st.timeout)
	defer cancel()
	_ = kv.Purge(ctx, requestKey(rec.Source, rec.JobID))
}

// lookup returns the record of a job, or ok false.
func (st *store) lookup(ctx context.Context, source, jobID string) (rec request, ok bool, err error) {
	kv, err := st.bucket(ctx)
	if err != nil {
		return rec, false, err
	}
	if err := st.connected(); err != nil {
		return rec, false, err
	}
	ctx, cancel := context.WithTimeout(ctx, st.timeout)
	defer cancel()
	entry, err := kv.Get(ctx, requestKey(source, jobID))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return rec, false, nil
	}
	if err != nil {
		return rec, false, st.wrap(err)
	}
	if err := json.Unmarshal(entry.Value(), &rec); err != nil {
		return rec, false, fmt.Errorf("gateway: the record of %s is not a request: %w", jobID, err)
	}
	return rec, true, nil
}
