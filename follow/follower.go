package follow

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/recoverpasscode/recoverpasscode/graph"
	"github.com/recoverpasscode/recoverpasscode/internal/timing"
	"github.com/recoverpasscode/recoverpasscode/ratelimit"
	"github.com/recoverpasscode/recoverpasscode/wire"
)

// Devices reads a managed device's action results. *graph.Client
// implements it.
type Devices interface {
	Device(ctx context.Context, tenantID, deviceID string) (graph.DeviceState, graph.Response, error)
}

var _ Devices = (*graph.Client)(nil)

// Reads is the fleet's read budget: a *ratelimit.Limiter on
// ratelimit.ReadsApp.
type Reads interface {
	Take(ctx context.Context, tenantID string) (ratelimit.Permit, error)
	Pause(ctx context.Context, tenantID string, until time.Time) error
	// Wrote and Answered tell the budget when the read a permit let go was
	// written and answered, so that a read that arrived late (Graph
	// counts arrivals) is counted where it arrived; Ended when it was
	// over, answered or not, so that one never answered stops counting
	// as in flight.
	Wrote(p ratelimit.Permit, sent time.Time)
	Answered(p ratelimit.Permit, at time.Time)
	Ended(p ratelimit.Permit, at time.Time)
}

var _ Reads = (*ratelimit.Limiter)(nil)

// Observer learns of each poll and each confirmation, for metrics and the
// audit trail. It must be safe for concurrent use and return quickly.
type Observer interface {
	// Polled reports one read of a device (status 0: no answer).
	Polled(status int)
	// Confirmed reports a confirmation once it is stored; first is false
	// when the stream already held it (an earlier Follower stored it and
	// died before retiring the Record).
	Confirmed(c wire.Confirmation, first bool)
}

type nopObserver struct{}

func (nopObserver) Polled(int)                        {}
func (nopObserver) Confirmed(wire.Confirmation, bool) {}

// ConsumerName is the durable consumer of the follows stream every
// Follower shares.
const ConsumerName = "follower"

// Config configures a Follower. JS, Devices, Reads and Worker are
// required.
type Config struct {
	JS      jetstream.JetStream
	Names   wire.Names
	Devices Devices
	Reads   Reads
	// Tokens, when set, is asked for the tenant's token before the read
	// budget's permit, so that nothing but the read follows the permit
	// (a first token from Entra ID after it would make the read arrive
	// late, out of the window the permit was counted in).
	// graph.TokenSource implements it.
	Tokens interface {
		Token(ctx context.Context, tenantID string) (string, error)
	}
	// Schedule is when to poll. The zero value is the defaults.
	Schedule Schedule
	// Concurrency bounds the polls in flight in this process. Defaults to
	// 16.
	Concurrency int
	// Slack is how much earlier than the call an action may have started,
	// by Intune's clock, and still be the one followed. Defaults to 30s.
	Slack time.Duration
	// Observer defaults to none.
	Observer Observer
	// Worker names this process in confirmations.
	Worker string
	Logger zerolog.Logger
	// Now defaults to time.Now.
	Now func() time.Time
}

// Follower polls followed devices and publishes their confirmations. It
// is safe for concurrent use; Run it once.
type Follower struct {
	cfg Config
	log zerolog.Logger
}

// New checks cfg and applies its defaults.
func New(cfg Config) (*Follower, error) {
	if cfg.JS == nil || cfg.Devices == nil || cfg.Reads == nil || cfg.Worker == "" {
		return nil, errors.New("follow: JS, Devices, Reads and Worker are required")
	}
	cfg.Schedule = cfg.Schedule.withDefaults()
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 16
	}
	if cfg.Slack <= 0 {
		cfg.Slack = 30 * time.Second
	}
	if cfg.Observer == nil {
		cfg.Observer = nopObserver{}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Follower{cfg: cfg, log: cfg.Logger.With().Str("component", "follow").Logger()}, nil
}

// Start begins following res, a succeeded result: it stores its first
// Record, deduplicated by job, so that a job answered twice is followed
// once. The worker calls it after storing the result and before
// acknowledging the job, so a crash in between follows the job on its
// redelivery.
func Start(ctx context.Context, js jetstream.JetStream, names wire.Names, s Schedule, res *wire.Result) error {
	rec := NewRecord(res, s)
	return publishRecord(ctx, js, names, rec)
}

func publishRecord(ctx context.Context, js jetstream.JetStream, names wire.Names, rec Record) error {
	data, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("follow: encode record: %w", err)
	}
	m := nats.NewMsg(names.Follow(rec.Source, rec.JobID))
	m.Data = data
	m.Header.Set(jetstream.MsgIDHeader, rec.JobID+"/follow/"+strconv.Itoa(rec.Polls))
	if _, err := js.PublishMsg(ctx, m); err != nil {
		return fmt.Errorf("follow: store record of job %s: %w", rec.JobID, err)
	}
	return nil
}

// Run consumes the follows stream through cons until ctx ends, then waits
// for the polls in flight (each bounded by ctx too). It returns nil after
// ctx ends.
func (f *Follower) Run(ctx context.Context, cons jetstream.Consumer) error {
	sem := make(chan struct{}, f.cfg.Concurrency)
	var wg sync.WaitGroup
	defer wg.Wait()
	for ctx.Err() == nil {
		batch, err := cons.Fetch(f.cfg.Concurrency, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			if ctx.Err() == nil {
				f.log.Warn().Err(err).Msg("pull from the follows consumer failed")
				timing.Sleep(ctx, time.Second)
			}
			continue
		}
		for msg := range batch.Messages() {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				// Not ours to finish: redelivered after the ack wait.
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				f.handle(ctx, msg)
			}()
		}
	}
	return nil
}

// handle acts on one delivery of a Record.
func (f *Follower) handle(ctx context.Context, msg jetstream.Msg) {
	var rec Record
	if err := json.Unmarshal(msg.Data(), &rec); err != nil || !wire.ValidID(rec.JobID) || !wire.ValidToken(rec.Source) {
		f.log.Error().Err(err).Str("subject", msg.Subject()).Msg("unreadable follow record; dropping it")
		_ = msg.Term()
		return
	}
	log := f.log.With().Str("job_id", rec.JobID).Str("device_id", rec.ManagedDeviceID).Logger()
	now := f.cfg.Now()
	if wait := rec.NextPoll.Sub(now); wait > 0 {
		_ = msg.NakWithDelay(wait)
		return
	}
	_ = msg.InProgress()
	if f.cfg.Tokens != nil {
		_, _ = f.cfg.Tokens.Token(ctx, rec.TenantID)
	}
	permit, err := f.cfg.Reads.Take(ctx, rec.TenantID)
	if err != nil {
		_ = msg.NakWithDelay(time.Second)
		return
	}
	st, resp, err := f.cfg.Devices.Device(ratelimit.WithTrace(ctx, f.cfg.Reads, permit), rec.TenantID, rec.ManagedDeviceID)
	f.cfg.Reads.Ended(permit, time.Now())
	f.cfg.Observer.Polled(resp.Status)
	if err != nil {
		f.readFailed(ctx, msg, rec, err, log)
		return
	}
	rec.Polls++
	rec.DeviceName, rec.LastSync = st.DeviceName, st.LastSyncDateTime
	if a, ok := st.Action(graph.ActionRecoverPasscode, rec.CalledAt, f.cfg.Slack); ok && wire.FinalActionState(a.ActionState) {
		c := rec.confirmation(a.ActionState, now, f.cfg.Worker)
		c.LastUpdated = a.LastUpdatedDateTime.UTC()
		f.confirm(ctx, msg, c, log)
		return
	}
	// The deadline is checked after a read, not before: a Record delivered
	// late (its Follower died holding it) still gets the read that may
	// find the device done.
	if !now.Before(rec.Deadline) {
		c := rec.confirmation(wire.StateUnknown, now, f.cfg.Worker)
		c.Error = fmt.Sprintf("no final state of the action on the device within %s of the call; the device may not have checked in", rec.Deadline.Sub(rec.CalledAt).Round(time.Second))
		f.confirm(ctx, msg, c, log)
		return
	}
	rec.NextPoll = now.Add(f.cfg.Schedule.interval(rec.Polls))
	if rec.NextPoll.After(rec.Deadline) {
		rec.NextPoll = rec.Deadline
	}
	if err := publishRecord(ctx, f.cfg.JS, f.cfg.Names, rec); err != nil {
		log.Warn().Err(err).Msg("could not store the next poll; polling again later")
		_ = msg.NakWithDelay(time.Second)
		return
	}
	// The publish retired this message already (one per subject); the
	// ack only tells the consumer.
	_ = msg.Ack()
	log.Debug().Int("polls", rec.Polls).Time("next_poll", rec.NextPoll).Msg("action not final yet")
}

// readFailed hands the Record back after a failed read: throttled, the
// read budget pauses for the fleet; a device Graph says is gone, or a read
// refused for good, ends the follow unknown with the reason.
func (f *Follower) readFailed(ctx context.Context, msg jetstream.Msg, rec Record, err error, log zerolog.Logger) {
	switch {
	case errors.Is(err, graph.ErrThrottled):
		wait := graph.ThrottleWait(err)
		if perr := f.cfg.Reads.Pause(ctx, rec.TenantID, f.cfg.Now().Add(wait)); perr != nil {
			log.Warn().Err(perr).Msg("could not share the read pause")
		}
		_ = msg.NakWithDelay(wait)
	case errors.Is(err, graph.ErrPermanent):
		rec.Polls++
		c := rec.confirmation(wire.StateUnknown, f.cfg.Now(), f.cfg.Worker)
		c.Error = "the device could not be read: " + wire.Truncate(err.Error(), 300) + " (reading managed devices needs DeviceManagementManagedDevices.Read.All)"
		f.confirm(ctx, msg, c, log)
	default:
		if ctx.Err() == nil {
			log.Info().Err(err).Msg("reading the device failed; polling again later")
		}
		_ = msg.NakWithDelay(min(f.cfg.Schedule.First, 30*time.Second))
	}
}

// confirm stores c, deduplicated by job, reports it, and retires the
// Record. A failure to store hands the Record back.
func (f *Follower) confirm(ctx context.Context, msg jetstream.Msg, c wire.Confirmation, log zerolog.Logger) {
	data, err := json.Marshal(c)
	if err != nil {
		log.Error().Err(err).Msg("could not encode the confirmation")
		_ = msg.NakWithDelay(time.Second)
		return
	}
	m := nats.NewMsg(f.cfg.Names.Confirmation(c.Source, c.JobID))
	m.Data = data
	m.Header.Set(jetstream.MsgIDHeader, c.JobID+"/confirmation")
	ack, err := f.cfg.JS.PublishMsg(ctx, m)
	if err != nil {
		log.Warn().Err(err).Msg("could not store the confirmation; trying again later")
		_ = msg.NakWithDelay(time.Second)
		return
	}
	f.cfg.Observer.Confirmed(c, !ack.Duplicate)
	log.Info().Str("state", c.State).Int("polls", c.Polls).Bool("duplicate", ack.Duplicate).Msg("device action confirmed")
	if err := msg.Ack(); err != nil {
		log.Warn().Err(err).Msg("ack of the follow record failed; its redelivery finds the confirmation stored")
	}
}
