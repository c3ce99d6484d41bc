package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/recoverpasscode/recoverpasscode/devserver"
	"github.com/recoverpasscode/recoverpasscode/history"
	"github.com/recoverpasscode/recoverpasscode/queue"
	"github.com/recoverpasscode/recoverpasscode/wire"
)

// The device-history run: one audit stream of cfg.HistoryEvents events,
// as the worker writes them (a Graph call and a decision per job, on
// <prefix>.audit.<source>.<tenant>.<device>.<day>, a million spread over
// a year), about one device in historyPerDevice on average, chosen at
// random per job, and one chatty device (automation naming it again and
// again) in every historyChattyEvery-th job. Each lookup is timed against
// the unit, a direct get of one message by sequence, in the same run.
const (
	historyPerDevice   = 10
	historyChattyEvery = 100
	historyLimit       = 100
	historySources     = 3
	// historySpacing spreads a million events over a year, as a fleet
	// recovering a few thousand passcodes a day would write them.
	historySpacing = 31536 * time.Millisecond
	// historyWindow is how many publishes the fill keeps unconfirmed.
	historyWindow = 4096
)

// historyRun is what the device-history run measured.
type historyRun struct {
	events, devices, chattyEvents int
	// fill is how long storing the events took.
	fill time.Duration
	// get, typical and chatty are sorted samples: a direct get of one
	// event by sequence, the history of a random device and that of the
	// chatty device (its newest historyLimit); typicalEvents is the mean
	// number of events a random device's history returned.
	get, typical, chatty []time.Duration
	typicalEvents        float64
	// whole are reads of the chatty device's whole history through a
	// filtered ordered consumer: what the newest-N search saves.
	whole []time.Duration
	// scan is one read of the whole stream looking for a device's id in
	// each event: the lookup without the subject index.
	scan time.Duration
	// coldGet, coldTypical and coldChatty are each the first lookup after
	// a restart of nats-server (its caches empty, the OS page cache warm).
	coldGet, coldTypical, coldChatty time.Duration
}

// historyStack is the nats-server of the run and a connection to it.
type historyStack struct {
	dir    string
	srv    *devserver.Server
	nc     *nats.Conn
	js     jetstream.JetStream
	stream jetstream.Stream
	names  wire.Names
}

func (h *historyStack) start(ctx context.Context) error {
	var err error
	// A restart recovers a million messages: give it time on a loaded machine.
	if h.srv, err = devserver.Start(devserver.Config{StoreDir: h.dir, StartTimeout: 2 * time.Minute}); err != nil {
		return err
	}
	if h.nc, err = nats.Connect(h.srv.URL()); err != nil {
		return err
	}
	// A loaded machine makes the scan's and the restarts' requests slow.
	if h.js, err = jetstream.New(h.nc, jetstream.WithPublishAsyncMaxPending(2*historyWindow), jetstream.WithDefaultTimeout(30*time.Second)); err != nil {
		return err
	}
	for _, cfg := range (queue.Setup{Names: h.names}).Streams() {
		if cfg.Name == h.names.AuditStream() {
			if h.stream, err = h.js.CreateOrUpdateStream(ctx, cfg); err != nil {
				return err
			}
		}
	}
	return nil
}

func (h *historyStack) stop() {
	if h.nc != nil {
		h.nc.Close()
	}
	if h.srv != nil {
		h.srv.Shutdown()
	}
}

// restart stops nats-server and starts it again on the same store.
func (h *historyStack) restart(ctx context.Context) error {
	h.stop()
	return h.start(ctx)
}

// historyDevice is the id of device i; the chatty device is -1.
func historyDevice(i int) string {
	if i < 0 {
		return "c4a77e11-0000-4000-8000-000000000000"
	}
	return deviceID(i)
}

// history runs the device-history measurement.
func (b *bench) history(ctx context.Context) (historyRun, error) {
	cfg := b.cfg
	run := historyRun{events: cfg.HistoryEvents, devices: max(1, cfg.HistoryEvents/historyPerDevice)}
	h := &historyStack{dir: filepath.Join(b.dir, "history")}
	if err := h.start(ctx); err != nil {
		return run, err
	}
	defer h.stop()

	b.logf("device history: storing %s audit events about %s devices and one chatty device", thousands(float64(run.events)), thousands(float64(run.devices)))
	started := time.Now()
	var err error
	report := func(n int) {
		b.logf("  %s events sent (%s/s)", thousands(float64(n)), thousands(float64(n)/time.Since(started).Seconds()))
	}
	if run.chattyEvents, err = h.fill(ctx, run.events, run.devices, report); err != nil {
		return run, fmt.Errorf("fill: %w", err)
	}
	run.fill = time.Since(started)
	b.logf("  stored in %s (%s events/s); the chatty device has %s", run.fill.Round(time.Millisecond),
		thousands(float64(run.events)/run.fill.Seconds()), thousands(float64(run.chattyEvents)))

	rnd := rand.New(rand.NewPCG(2, 26))
	reader := history.New(h.js, h.names)
	samples := cfg.HistorySamples
	b.logf("device history: %d direct gets, %d lookups of random devices, %d of the chatty device (newest %d)", samples, samples, samples, historyLimit)
	var returned int
	for range samples {
		seq := 1 + rnd.Uint64N(uint64(run.events))
		d, err := timed(func() error { _, err := h.stream.GetMsg(ctx, seq); return err })
		if err != nil {
			return run, fmt.Errorf("direct get %d: %w", seq, err)
		}
		run.get = append(run.get, d)

		var n int
		device := historyDevice(rnd.IntN(run.devices))
		d, err = timed(func() error {
			events, err := reader.Device(ctx, benchTenant, device, historyLimit)
			n = len(events)
			return err
		})
		if err != nil {
			return run, fmt.Errorf("device %s: %w", device, err)
		}
		run.typical, returned = append(run.typical, d), returned+n

		d, err = timed(func() error {
			events, err := reader.Device(ctx, benchTenant, historyDevice(-1), historyLimit)
			if err == nil && len(events) != min(historyLimit, run.chattyEvents) {
				err = fmt.Errorf("%d events, want %d", len(events), min(historyLimit, run.chattyEvents))
			}
			return err
		})
		if err != nil {
			return run, fmt.Errorf("chatty device: %w", err)
		}
		run.chatty = append(run.chatty, d)
	}
	run.typicalEvents = float64(returned) / float64(samples)

	wholeSamples := max(1, samples/20)
	b.logf("device history: %d reads of the chatty device's whole history through a filtered consumer", wholeSamples)
	for range wholeSamples {
		d, err := timed(func() error {
			return h.readAll(ctx, h.names.AuditOfDevice(benchTenant, historyDevice(-1)), run.chattyEvents, nil)
		})
		if err != nil {
			return run, fmt.Errorf("whole history: %w", err)
		}
		run.whole = append(run.whole, d)
	}

	b.logf("device history: one scan of all %s events for one device, as without the subject index", thousands(float64(run.events)))
	needle := []byte(historyDevice(rnd.IntN(run.devices)))
	if run.scan, err = timed(func() error {
		return h.readAll(ctx, h.names.AuditWildcard(), run.events, func(data []byte) { _ = bytes.Contains(data, needle) })
	}); err != nil {
		return run, fmt.Errorf("scan: %w", err)
	}

	b.logf("device history: the first lookups after restarts of nats-server")
	for _, cold := range []struct {
		d    *time.Duration
		what func(*history.Reader) error
	}{
		{&run.coldGet, func(*history.Reader) error {
			_, err := h.stream.GetMsg(ctx, 1+rnd.Uint64N(uint64(run.events)))
			return err
		}},
		{&run.coldTypical, func(r *history.Reader) error {
			_, err := r.Device(ctx, benchTenant, historyDevice(rnd.IntN(run.devices)), historyLimit)
			return err
		}},
		{&run.coldChatty, func(r *history.Reader) error {
			_, err := r.Device(ctx, benchTenant, historyDevice(-1), historyLimit)
			return err
		}},
	} {
		if err := h.restart(ctx); err != nil {
			return run, fmt.Errorf("restart: %w", err)
		}
		r := history.New(h.js, h.names)
		if *cold.d, err = timed(func() error { return cold.what(r) }); err != nil {
			return run, fmt.Errorf("after a restart: %w", err)
		}
	}
	for _, s := range [][]time.Duration{run.get, run.typical, run.chatty, run.whole} {
		slices.Sort(s)
	}
	return run, nil
}

// timed runs f and returns how long it took.
func timed(f func() error) (time.Duration, error) {
	start := time.Now()
	err := f()
	return time.Since(start), err
}

// fill stores events audit events, two per job (the call and the
// decision), and returns how many are the chatty device's.
func (h *historyStack) fill(ctx context.Context, events, devices int, progress func(stored int)) (int, error) {
	const window = historyWindow
	rnd := rand.New(rand.NewPCG(15, 2026))
	sources := [historySources]string{"ticketing", "batch", "automation"}
	futures := make([]jetstream.PubAckFuture, 0, window)
	flush := func() error {
		for _, f := range futures {
			select {
			case <-f.Ok():
			case err := <-f.Err():
				return err
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		futures = futures[:0]
		return nil
	}
	chatty := 0
	at := time.Now().Add(-time.Duration(events) * historySpacing)
	for i := 0; i < events; i++ {
		job := i / 2
		device, source := rnd.IntN(devices), sources[job%historySources]
		if job%historyChattyEvery == 0 {
			device, source = -1, "automation"
		}
		res := rawResult(jobID(job))
		res.Source, res.ManagedDeviceID = source, historyDevice(device)
		kind := wire.KindGraphCall
		if i%2 == 1 {
			kind = wire.KindDecision
		}
		e := wire.NewAuditEvent(kind, &res, at.Add(time.Duration(i)*historySpacing))
		data, err := json.Marshal(e)
		if err != nil {
			return 0, err
		}
		if device < 0 {
			chatty++
		}
		f, err := h.js.PublishAsync(h.names.Audit(source, res.TenantID, res.ManagedDeviceID, e.At), data)
		if err != nil {
			return 0, err
		}
		if futures = append(futures, f); len(futures) == window {
			if err := flush(); err != nil {
				return 0, err
			}
		}
		if (i+1)%(events/10) == 0 {
			progress(i + 1)
		}
	}
	return chatty, flush()
}

// readAll reads want messages matching filter through an ordered consumer,
// handing each payload to fn.
func (h *historyStack) readAll(ctx context.Context, filter string, want int, fn func([]byte)) error {
	cons, err := h.stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{filter}})
	if err != nil {
		return err
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(4096))
	if err != nil {
		return err
	}
	defer it.Stop()
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	for range want {
		m, err := it.Next()
		if err != nil {
			return err
		}
		if fn != nil {
			fn(m.Data())
		}
	}
	return nil
}

// historyRows are the table's lines of the device-history run.
func (r *report) historyRows() []row {
	h := r.history
	if h.events == 0 {
		return nil
	}
	unit := percentile(h.get, 50)
	ratio := func(d time.Duration) string { return fmt.Sprintf("×%.1f", float64(d)/float64(unit)) }
	among := fmt.Sprintf("among %s audit events (%s devices, ~%d events each; one chatty device with %s)",
		thousands(float64(h.events)), thousands(float64(h.devices)), historyPerDevice, thousands(float64(h.chattyEvents)))
	typicalP99 := percentile(h.typical, 99)
	return []row{{
		what:   fmt.Sprintf("the unit: a direct get of one audit event by sequence, %s (%d samples)", among, len(h.get)),
		result: fmt.Sprintf("p50 **%s**, p99 %s; storing the events took %s (%s events/s)", ms(unit), ms(percentile(h.get, 99)), h.fill.Round(time.Millisecond), thousands(float64(h.events)/h.fill.Seconds())),
	}, {
		what: fmt.Sprintf("device history (`history.Reader.Device`) of a random device, newest %d: subject index, direct gets (%.1f events returned on average)", historyLimit, h.typicalEvents),
		result: fmt.Sprintf("p50 **%s = %s** of the unit, p99 %s = %s", ms(percentile(h.typical, 50)), ratio(percentile(h.typical, 50)),
			ms(typicalP99), ratio(typicalP99)),
	}, {
		what: fmt.Sprintf("device history of the chatty device (%s events, %.0f a day), newest %d: its newest days' subjects read until it has them", thousands(float64(h.chattyEvents)),
			float64(h.chattyEvents)/(float64(h.events)*historySpacing.Hours()/24), historyLimit),
		result: fmt.Sprintf("p50 **%s = %s**, p99 %s = %s", ms(percentile(h.chatty, 50)), ratio(percentile(h.chatty, 50)),
			ms(percentile(h.chatty, 99)), ratio(percentile(h.chatty, 99))),
	}, {
		what:   fmt.Sprintf("for comparison: the chatty device's whole history through a filtered ordered consumer (%d samples)", len(h.whole)),
		result: fmt.Sprintf("p50 %s = %s", ms(percentile(h.whole, 50)), ratio(percentile(h.whole, 50))),
	}, {
		what:   "for comparison: without the index, one device's events found by reading the whole stream",
		result: fmt.Sprintf("%s = %s", ms(h.scan), ratio(h.scan)),
	}, {
		what:   "first lookup after a nats-server restart (its block caches and per-block subject state empty, OS page cache warm): direct get, random device, chatty device",
		result: fmt.Sprintf("%s, %s = %s, %s = %s", ms(h.coldGet), ms(h.coldTypical), ratio(h.coldTypical), ms(h.coldChatty), ratio(h.coldChatty)),
	}}
}
