package worker

import (
	"context"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/recoverpasscode/recoverpasscode/follow"
	"github.com/recoverpasscode/recoverpasscode/metrics"
	"github.com/recoverpasscode/recoverpasscode/wire"
)

// FollowTelemetry turns what a follow.Follower does into metrics and audit
// events. It is safe for concurrent use.
type FollowTelemetry struct {
	t *Telemetry
	m *metrics.Follow
}

var _ follow.Observer = (*FollowTelemetry)(nil)

// NewFollowTelemetry publishes confirmation audit events through t and
// records follow metrics in m.
func NewFollowTelemetry(t *Telemetry, m *metrics.Follow) *FollowTelemetry {
	return &FollowTelemetry{t: t, m: m}
}

// Polled counts one read of a followed device.
func (f *FollowTelemetry) Polled(status int) { f.m.Read(status) }

// Confirmed publishes the confirmation's audit event (deduplicated by job,
// so a confirmation stored again is one event) and, the first time,
// counts it.
func (f *FollowTelemetry) Confirmed(c wire.Confirmation, first bool) {
	if first {
		f.m.Confirmed(c.State, c.ConfirmedAt.Sub(c.CalledAt))
	}
	e := wire.AuditEvent{
		Kind: wire.KindConfirmation, JobID: c.JobID, IdempotencyKey: c.IdempotencyKey, Source: c.Source,
		RequestedBy: c.RequestedBy, Ticket: c.Ticket, TenantID: c.TenantID,
		ManagedDeviceID: c.ManagedDeviceID, AzureADDeviceID: c.AzureADDeviceID, SerialNumber: c.SerialNumber,
		State: c.State, Error: c.Error, Worker: c.Worker, At: c.ConfirmedAt,
	}
	f.t.audit(e, "once")
}

// SampleFollows sets the follows in progress from the follows stream's
// message count; it suits metrics.Metrics.OnScrape.
func (f *FollowTelemetry) SampleFollows(js jetstream.JetStream, names wire.Names) func(context.Context) {
	return func(ctx context.Context) {
		s, err := js.Stream(ctx, names.FollowsStream())
		if err != nil {
			return
		}
		f.m.InProgress(s.CachedInfo().State.Msgs)
	}
}
