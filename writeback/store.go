package writeback

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/recoverpasscode/recoverpasscode/wire"
)

// Failure is a delivery that finally failed, kept with its reason in the
// deliveries bucket until it is redelivered (or, like results, for 30
// days). Its key is failed.<source>.<endpoint>.<jobId>: a result's latest
// failure at an endpoint; a confirmation's (package follow) is
// failed.<source>.<endpoint>.<jobId>/confirmation.
type Failure struct {
	Source   string `json:"source"`
	Endpoint string `json:"endpoint"`
	// Kind is webhook, servicenow or jira.
	Kind  string `json:"kind"`
	JobID string `json:"jobId"`
	// WebhookID is the webhook-id every attempt carried, <jobId>/result
	// or <jobId>/confirmation.
	WebhookID string `json:"webhookId"`
	// Confirmation is set on the failed delivery of a followed job's
	// confirmation, ConfirmationSequence its sequence in the confirmations
	// stream, where a redelivery reads it again, and ConfirmationState its
	// state.
	Confirmation         bool   `json:"confirmation,omitempty"`
	ConfirmationSequence uint64 `json:"confirmationSequence,omitempty"`
	ConfirmationState    string `json:"confirmationState,omitempty"`
	// ResultSequence is the result's sequence in the results stream, where
	// a redelivery reads it again.
	ResultSequence  uint64      `json:"resultSequence"`
	ResultStatus    wire.Status `json:"resultStatus,omitempty"`
	Ticket          string      `json:"ticket,omitempty"`
	ManagedDeviceID string      `json:"managedDeviceId,omitempty"`
	Outcome         Outcome     `json:"outcome"`
	// Reason says, for a person, why the delivery ended.
	Reason string `json:"reason"`
	// Status is the last answer's HTTP status (0: none); Body an excerpt
	// of its body, never holding a configured secret.
	Status int    `json:"status,omitempty"`
	Body   string `json:"body,omitempty"`
	// Attempts counts the attempts of the last round of delivery.
	Attempts int `json:"attempts"`
	// Redeliveries counts the rounds an operator asked for before this one.
	Redeliveries int       `json:"redeliveries,omitempty"`
	StoredAt     time.Time `json:"storedAt"`
	FailedAt     time.Time `json:"failedAt"`
	// Redeliver is set while a redelivery an operator asked for is under
	// way.
	Redeliver *Redelivery `json:"redeliver,omitempty"`

	revision uint64
}

// Redelivery is an operator's request to deliver a failed delivery again.
type Redelivery struct {
	RequestedAt time.Time `json:"requestedAt"`
	// By names who asked (the operator's user, for the record).
	By string `json:"by,omitempty"`
}

// Disabled is an endpoint write-back has stopped delivering to, because it
// answered 410 Gone. Its results wait in its consumer; redelivering the
// failed delivery that disabled it (`enqueue deliveries redeliver`)
// enables it again. Its key is endpoint.<source>.<endpoint>.
type Disabled struct {
	Source   string    `json:"source"`
	Endpoint string    `json:"endpoint"`
	JobID    string    `json:"jobId"`
	Reason   string    `json:"reason"`
	At       time.Time `json:"at"`
}

// Filter selects failed deliveries; empty fields match all.
type Filter struct {
	Source, Endpoint, JobID string
}

// ErrNoBucket is returned when the deliveries bucket does not exist yet.
var ErrNoBucket = errors.New("writeback: the deliveries bucket does not exist: start a worker first (it creates it)")

// ErrRedeliveryPending is returned by Redeliver for a failure whose
// redelivery is already under way.
var ErrRedeliveryPending = errors.New("writeback: a redelivery is already under way")

// Store reads and writes the deliveries bucket: failed deliveries and
// disabled endpoints. It is safe for concurrent use.
type Store struct {
	kv jetstream.KeyValue
}

// OpenStore opens the deliveries bucket the workers created.
func OpenStore(ctx context.Context, js jetstream.JetStream, names wire.Names) (*Store, error) {
	kv, err := js.KeyValue(ctx, names.DeliveriesBucket())
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, ErrNoBucket
	}
	if err != nil {
		return nil, fmt.Errorf("writeback: open bucket %s: %w", names.DeliveriesBucket(), err)
	}
	return &Store{kv: kv}, nil
}

func failureKey(source, endpoint, jobID string) string {
	return "failed." + source + "." + endpoint + "." + jobID
}

// confirmationItem is the last token of a confirmation's failure key.
func confirmationItem(jobID string) string { return jobID + "/confirmation" }

// key is the failure's key in the bucket.
func (f Failure) key() string {
	if f.Confirmation {
		return failureKey(f.Source, f.Endpoint, confirmationItem(f.JobID))
	}
	return failureKey(f.Source, f.Endpoint, f.JobID)
}

func disabledKey(source, endpoint string) string { return "endpoint." + source + "." + endpoint }

// keys are the key filters of f: a token per field, "*" for any; a job's
// result and its confirmation.
func (f Filter) keys() []string {
	tok := func(s string) string {
		if s == "" {
			return "*"
		}
		return s
	}
	if f.JobID == "" {
		return []string{failureKey(tok(f.Source), tok(f.Endpoint), "*")}
	}
	return []string{failureKey(tok(f.Source), tok(f.Endpoint), f.JobID), failureKey(tok(f.Source), tok(f.Endpoint), confirmationItem(f.JobID))}
}

func (f Filter) check() error {
	for _, field := range []struct{ name, v string }{{"source", f.Source}, {"endpoint", f.Endpoint}, {"job id", f.JobID}} {
		if field.v != "" && !wire.ValidToken(field.v) && !wire.ValidID(field.v) {
			return fmt.Errorf("writeback: %s %q: want letters, digits, '-' and '_'", field.name, wire.Truncate(field.v, 64))
		}
	}
	return nil
}

// Failures lists the failed deliveries f selects, oldest failure first.
func (s *Store) Failures(ctx context.Context, f Filter) ([]Failure, error) {
	if err := f.check(); err != nil {
		return nil, err
	}
	var out []Failure
	err := s.each(ctx, f.keys(), func(e jetstream.KeyValueEntry) {
		var fl Failure
		if json.Unmarshal(e.Value(), &fl) == nil {
			fl.revision = e.Revision()
			out = append(out, fl)
		}
	})
	slices.SortFunc(out, func(a, b Failure) int { return a.FailedAt.Compare(b.FailedAt) })
	return out, err
}

// Disabled lists the disabled endpoints.
func (s *Store) Disabled(ctx context.Context) ([]Disabled, error) {
	var out []Disabled
	err := s.each(ctx, []string{"endpoint.>"}, func(e jetstream.KeyValueEntry) {
		var d Disabled
		if json.Unmarshal(e.Value(), &d) == nil {
			out = append(out, d)
		}
	})
	return out, err
}

// each passes every live entry under filters to f.
func (s *Store) each(ctx context.Context, filters []string, f func(jetstream.KeyValueEntry)) error {
	w, err := s.kv.WatchFiltered(ctx, filters, jetstream.IgnoreDeletes())
	if err != nil {
		return fmt.Errorf("writeback: read deliveries: %w", err)
	}
	defer w.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case e := <-w.Updates():
			if e == nil {
				return nil
			}
			f(e)
		}
	}
}

// Redeliver asks the deliverer to deliver f again, with a fresh round of
// retries. If f's endpoint is disabled, it is enabled first, and reenabled
// says so. A failure already being redelivered gives
// ErrRedeliveryPending; one changed since it was listed gives
// jetstream.ErrKeyExists (list it again).
func (s *Store) Redeliver(ctx context.Context, f Failure, by string) (reenabled bool, err error) {
	if f.Redeliver != nil {
		return false, ErrRedeliveryPending
	}
	if _, err := s.kv.Get(ctx, disabledKey(f.Source, f.Endpoint)); err == nil {
		if err := s.kv.Delete(ctx, disabledKey(f.Source, f.Endpoint)); err != nil {
			return false, fmt.Errorf("writeback: enable %s/%s: %w", f.Source, f.Endpoint, err)
		}
		reenabled = true
	} else if !errors.Is(err, jetstream.ErrKeyNotFound) {
		return false, fmt.Errorf("writeback: read %s/%s: %w", f.Source, f.Endpoint, err)
	}
	f.Redeliver = &Redelivery{RequestedAt: time.Now().UTC(), By: by}
	raw, err := json.Marshal(f)
	if err != nil {
		return reenabled, err
	}
	if _, err := s.kv.Update(ctx, f.key(), raw, f.revision); err != nil {
		return reenabled, fmt.Errorf("writeback: redeliver %s to %s/%s: %w", f.JobID, f.Source, f.Endpoint, err)
	}
	return reenabled, nil
}

// keep stores a failed delivery.
func (s *Store) keep(ctx context.Context, f Failure) error {
	raw, err := json.Marshal(f)
	if err != nil {
		return err
	}
	_, err = s.kv.Put(ctx, f.key(), raw)
	return err
}

// resolve forgets a failure that was redelivered.
func (s *Store) resolve(ctx context.Context, f Failure) error {
	return s.kv.Delete(ctx, f.key())
}

// disable records that an endpoint answered 410 Gone.
func (s *Store) disable(ctx context.Context, d Disabled) error {
	raw, err := json.Marshal(d)
	if err != nil {
		return err
	}
	_, err = s.kv.Put(ctx, disabledKey(d.Source, d.Endpoint), raw)
	return err
}

// count is the number of failed deliveries kept for an endpoint.
func (s *Store) count(ctx context.Context, source, endpoint string) (int, error) {
	n := 0
	err := s.each(ctx, []string{failureKey(source, endpoint, "*")}, func(jetstream.KeyValueEntry) { n++ })
	return n, err
}
