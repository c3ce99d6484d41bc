package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"
)

// await waits for a T (what, for errors) on the subscription, or finds it
// already stored: before waiting, and once more when ctx ends. later
// tells a person what happens to it after we stop waiting.
func await[T any](ctx context.Context, live <-chan *nats.Msg, stored func(context.Context) (*T, bool), what, later string) (*T, error) {
	if v, ok := stored(ctx); ok {
		return v, nil
	}
	select {
	case m := <-live:
		var v T
		if err := json.Unmarshal(m.Data, &v); err != nil {
			return nil, fmt.Errorf("the %s is not valid JSON: %w", what, err)
		}
		return &v, nil
	case <-ctx.Done():
		if v, ok := stored(context.WithoutCancel(ctx)); ok {
			return v, nil
		}
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return nil, fmt.Errorf("no %s arrived in time; %s", what, later)
		}
		return nil, fmt.Errorf("stopped waiting; %s", later)
	}
}
