package service

import (
	"context"
	"fmt"
	"sync"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/recoverpasscode/recoverpasscode/follow"
	"github.com/recoverpasscode/recoverpasscode/graph"
	"github.com/recoverpasscode/recoverpasscode/queue"
	"github.com/recoverpasscode/recoverpasscode/ratelimit"
	"github.com/recoverpasscode/recoverpasscode/wire"
)

// FollowConfig configures the reads a worker makes: resolving the devices
// jobs name by azureADDeviceId or serialNumber, and following what the
// devices do with the action.
type FollowConfig struct {
	// ReadRate is the fleet-wide budget of Graph reads per app per tenant
	// [RECOVER_READ_RATE_LIMIT], apart from Rate's POSTs. Defaults to
	// ratelimit.DefaultReadRate (2000/20s, Intune's limit).
	ReadRate ratelimit.Rate
	// Sources are the sources whose succeeded jobs are all followed
	// [RECOVER_FOLLOW_SOURCES], as if each job said "follow": true.
	// Defaults to none.
	Sources []string
	// Schedule is when a follow polls [RECOVER_FOLLOW_FIRST,
	// RECOVER_FOLLOW_MAX, RECOVER_FOLLOW_FOR]. Defaults to the first poll a
	// minute after the call, intervals doubling up to 15 minutes, for 24
	// hours.
	Schedule follow.Schedule
	// Concurrency bounds the polls in flight in this process
	// [RECOVER_FOLLOW_CONCURRENCY]. Defaults to 16.
	Concurrency int
}

// DefaultFollowConfig is FollowConfig with every default set.
func DefaultFollowConfig() FollowConfig {
	var c FollowConfig
	c.defaults()
	return c
}

func (c *FollowConfig) defaults() {
	if c.ReadRate == (ratelimit.Rate{}) {
		c.ReadRate = ratelimit.DefaultReadRate
	}
	c.Schedule = follow.Schedule{First: c.Schedule.First, Max: c.Schedule.Max, For: c.Schedule.For}
	if c.Schedule.First <= 0 {
		c.Schedule.First = follow.DefaultFirst
	}
	if c.Schedule.Max <= 0 {
		c.Schedule.Max = follow.DefaultMax
	}
	if c.Schedule.For <= 0 {
		c.Schedule.For = follow.DefaultFor
	}
	if c.Concurrency <= 0 {
		c.Concurrency = 16
	}
}

// validate names the setting to fix.
func (c *FollowConfig) validate() error {
	for _, s := range c.Sources {
		if !wire.ValidToken(s) {
			return fmt.Errorf("RECOVER_FOLLOW_SOURCES: %q is not a source name (letters, digits, '-', '_')", s)
		}
	}
	if c.Schedule.First > c.Schedule.Max {
		return fmt.Errorf("RECOVER_FOLLOW_FIRST (%s) exceeds RECOVER_FOLLOW_MAX (%s)", c.Schedule.First, c.Schedule.Max)
	}
	return nil
}

// sourceSet is Sources as a set.
func (c *FollowConfig) sourceSet() map[string]bool {
	m := make(map[string]bool, len(c.Sources))
	for _, s := range c.Sources {
		m[s] = true
	}
	return m
}

// follower runs a worker's follow-through: the read budget's limiter, and
// a follow.Follower on the followers' consumer until stopped.
type follower struct {
	reads *ratelimit.Limiter
	f     *follow.Follower
	cons  jetstream.Consumer
	wg    sync.WaitGroup
}

// newFollower builds the read limiter and the Follower.
func newFollower(ctx context.Context, js jetstream.JetStream, kvLimits jetstream.KeyValue, cfg *Config, names wire.Names, client *graph.Client, tokens graph.TokenSource, obs follow.Observer, limiterCfg ratelimit.Config, log zerolog.Logger) (*follower, error) {
	limiterCfg.App = ratelimit.ReadsApp(cfg.Credential.ClientID)
	limiterCfg.Rate = cfg.Follow.ReadRate
	limiterCfg.Burst = 0
	limiterCfg.OnBudget = nil
	reads, err := ratelimit.New(ctx, kvLimits, limiterCfg)
	if err != nil {
		return nil, fmt.Errorf("read budget: %w", err)
	}
	f, err := follow.New(follow.Config{
		JS: js, Names: names, Devices: client, Reads: reads, Tokens: tokens,
		Schedule: cfg.Follow.Schedule, Concurrency: cfg.Follow.Concurrency,
		Observer: obs, Worker: cfg.Name, Logger: log,
	})
	if err != nil {
		_ = reads.Close()
		return nil, err
	}
	cons, err := js.Consumer(ctx, names.FollowsStream(), queue.FollowConsumerName)
	if err != nil {
		_ = reads.Close()
		return nil, fmt.Errorf("consumer %s: %w", queue.FollowConsumerName, err)
	}
	return &follower{reads: reads, f: f, cons: cons}, nil
}

// start runs the Follower until ctx ends.
func (fl *follower) start(ctx context.Context) {
	fl.wg.Add(1)
	go func() {
		defer fl.wg.Done()
		_ = fl.f.Run(ctx, fl.cons)
	}()
}

// stop waits for the Follower (its ctx must have ended) and closes the
// read limiter.
func (fl *follower) stop() {
	fl.wg.Wait()
	_ = fl.reads.Close()
}

// startFollow is the worker's Config.Follow.
func startFollow(js jetstream.JetStream, names wire.Names, s follow.Schedule) func(context.Context, *wire.Result) error {
	return func(ctx context.Context, res *wire.Result) error {
		return follow.Start(ctx, js, names, s, res)
	}
}
