package main

import (
	"context"
	"encoding/json"
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
	stored := func(ctx context.Context) (*wire.Confirmation, bool) {
		return storedConfirmation(ctx, js, names, subject)
	}
	return await(ctx, live, stored, "confirmation", "the workers go on following the device, and its confirmation will be stored on "+subject)
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
