package batch

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/recoverpasscode/recoverpasscode/wire"
)

// Results reads the results stored under one subject filter, oldest first:
// those already stored when it was opened (the backlog), then each new one
// as it arrives. A Results is not safe for concurrent use.
type Results struct {
	*StreamReader
}

// OpenResults starts reading the results stream's messages matching filter
// (see ResultsFilter).
func OpenResults(ctx context.Context, js jetstream.JetStream, names wire.Names, filter string) (*Results, error) {
	r, err := OpenStream(ctx, js, names.ResultsStream(), filter)
	if err != nil {
		return nil, err
	}
	return &Results{r}, nil
}

// Next returns the next result; it waits for one when none is stored yet.
// A message that is not a result is reported by a *NotResultError.
func (r *Results) Next(ctx context.Context) (wire.Result, error) {
	msg, err := r.StreamReader.Next(ctx)
	if err != nil {
		return wire.Result{}, err
	}
	return decodeResult(msg)
}

func decodeResult(msg jetstream.Msg) (wire.Result, error) {
	var res wire.Result
	if err := json.Unmarshal(msg.Data(), &res); err != nil || res.JobID == "" {
		return wire.Result{}, &NotResultError{Subject: msg.Subject()}
	}
	return res, nil
}

// ReadBacklog reads the results stored when the reader was opened, passing
// each to add. Messages that are not results are counted, not passed. It
// fails with ErrStalled when the stored results stop arriving.
func (r *Results) ReadBacklog(ctx context.Context, add func(wire.Result)) (skipped int, err error) {
	for !r.CaughtUp() {
		msg, err := r.NextStored(ctx)
		if err != nil {
			return skipped, err
		}
		res, err := decodeResult(msg)
		if err != nil {
			skipped++
			continue
		}
		add(res)
	}
	return skipped, nil
}

// NotResultError is a message on a results subject that is not a result.
type NotResultError struct {
	Subject string
}

// Error names the subject of the message.
func (e *NotResultError) Error() string {
	return fmt.Sprintf("batch: message on %s is not a result", e.Subject)
}
