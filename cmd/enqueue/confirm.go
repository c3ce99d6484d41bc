package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/recoverpasscode/recoverpasscode/wire"
)

// awaitConfirmation waits for a followed job's confirmation on the
// subscription, or finds it already stored.
func awaitConfirmation(ctx context.Context, js jetstream.JetStream, names wire.Names, subject string, live <-chan *nats.Msg) (*wire.Confirmation, error) {
	if c, ok := storedConfirmation(ctx, js, names, subject); ok {
		return c, nil
	}
	select {
	case m := <-live:
		var c wire.Confirmation
		if err := json.Unmarshal(m.Data, &c); err != nil {
			return nil, fmt.Errorf("the confirmation is not valid JSON: %w", err)
		}
		return &c, nil
	case <-ctx.Done():
		if c, ok := storedConfirmation(context.WithoutCancel(ctx), js, names, subject); ok {
			return c, nil
		}
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return nil, errors.New("no confirmation arrived in time; the workers go on following the device, and its confirmation will be stored on " + subject)
		}
		return nil, errors.New("stopped waiting; the workers go on following the device, and its confirmation will be stored on " + subject)
	}
}

// storedConfirmation reads the confirmation stored on subject through an
// ordered consumer filtered on it, which a source may create for its own.
func storedConfirmation(ctx context.Context, js jetstream.JetStream, names wire.Names, subject string) (*wire.Confirmation, bool) {
	gctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	cons, err := js.OrderedConsumer(gctx, names.ConfirmationsStream(), jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject}})
	if err != nil {
		return nil, false
	}
	info, err := cons.Info(gctx)
	if err != nil || info.NumPending == 0 {
		return nil, false
	}
	msg, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
	if err != nil {
		return nil, false
	}
	var c wire.Confirmation
	if err := json.Unmarshal(msg.Data(), &c); err != nil {
		return nil, false
	}
	return &c, true
}

// printJSONLine writes v as one line of JSON.
func printJSONLine(w io.Writer, v any) {
	_ = json.NewEncoder(w).Encode(v)
}

// printConfirmation writes a confirmation as one line for a person.
func printConfirmation(w io.Writer, c *wire.Confirmation) {
	var b strings.Builder
	fmt.Fprintf(&b, "confirmation: %s on device %s", c.State, c.ManagedDeviceID)
	if c.DeviceName != "" {
		fmt.Fprintf(&b, " (%s)", c.DeviceName)
	}
	if !c.LastUpdated.IsZero() {
		fmt.Fprintf(&b, ", action updated %s", c.LastUpdated.Format(time.RFC3339))
	}
	if !c.LastSyncDateTime.IsZero() {
		fmt.Fprintf(&b, ", last check-in %s", c.LastSyncDateTime.Format(time.RFC3339))
	}
	fmt.Fprintf(&b, ", %s after the call, %d poll(s)", c.ConfirmedAt.Sub(c.CalledAt).Round(time.Second), c.Polls)
	if c.Error != "" {
		fmt.Fprintf(&b, ": %s", c.Error)
	}
	fmt.Fprintln(w, b.String())
}
