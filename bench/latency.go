package main

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/recoverpasscode/recoverpasscode/graph"
	"github.com/recoverpasscode/recoverpasscode/graph/graphsim"
	"github.com/recoverpasscode/recoverpasscode/wire"
)

// warmup is how many jobs or calls precede the timed ones, so that
// connections and caches are warm as in a worker that has been running.
const warmup = 10

// latencyRun is what the idle-latency measurement found.
type latencyRun struct {
	samples int
	// e2e is enqueue to result at a subscriber, per job, sorted.
	e2e []time.Duration
	// graph is one direct call to the Graph double from outside the
	// worker, per call, sorted: what the double itself takes.
	graph []time.Duration
}

// overhead is the p-th percentile of what the worker adds to a job: the
// end-to-end time less the Graph double's median time.
func (l latencyRun) overhead(p float64) time.Duration {
	return max(0, percentile(l.e2e, p)-percentile(l.graph, 50))
}

// latency times single jobs through one idle worker, one after the other:
// from the publish (with its acknowledgement from JetStream) to the result
// arriving at a subscriber of the results subject, as a ticketing
// integration waiting for its answer sees it. Then it times direct calls
// to the Graph double, with a warm token and connection, to subtract what
// the double itself takes.
func (b *bench) latency(ctx context.Context) (latencyRun, error) {
	run := latencyRun{samples: b.cfg.LatencySamples}
	s, err := startStack(ctx, b.dir, graphsim.Config{Limit: -1})
	if err != nil {
		return run, err
	}
	defer s.close()
	f, err := b.start(ctx, s, b.workerFleet(1, "unlimited"))
	if err != nil {
		return run, err
	}
	defer f.stop()
	sub, err := s.nc.SubscribeSync(s.names.Result(source, "*"))
	if err != nil {
		return run, err
	}
	defer sub.Unsubscribe()

	for i := range warmup + run.samples {
		d, err := s.roundTrip(ctx, i, sub)
		if err != nil {
			return run, err
		}
		if i >= warmup {
			run.e2e = append(run.e2e, d)
		}
	}
	if run.graph, err = s.timeGraph(ctx, run.samples); err != nil {
		return run, err
	}
	f.stop()
	if err := f.check(); err != nil {
		return run, err
	}
	if err := s.checkClean(ctx, warmup+run.samples+warmup+run.samples); err != nil {
		return run, err
	}
	slices.Sort(run.e2e)
	slices.Sort(run.graph)
	b.logf("  enqueue→result p50 %s p99 %s; graph double p50 %s; overhead p50 %s p99 %s",
		ms(percentile(run.e2e, 50)), ms(percentile(run.e2e, 99)), ms(percentile(run.graph, 50)),
		ms(run.overhead(50)), ms(run.overhead(99)))
	return run, nil
}

// roundTrip publishes job i and waits for its result on sub.
func (s *stack) roundTrip(ctx context.Context, i int, sub *nats.Subscription) (time.Duration, error) {
	m, err := s.jobMsg(i)
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	start := time.Now()
	if _, err := s.js.PublishMsg(ctx, m); err != nil {
		return 0, fmt.Errorf("publish job: %w", err)
	}
	want := s.names.Result(source, jobID(i))
	for {
		msg, err := sub.NextMsgWithContext(ctx)
		if err != nil {
			return 0, fmt.Errorf("result of %s: %w", jobID(i), err)
		}
		if msg.Subject == want {
			return time.Since(start), nil
		}
	}
}

// timeGraph makes n direct recoverPasscode calls to the double through
// graph.Client and real MSAL credentials, after a warm-up, and returns
// each call's time.
func (s *stack) timeGraph(ctx context.Context, n int) ([]time.Duration, error) {
	cred, err := graph.NewCredential(graph.CredentialConfig{
		TenantID: benchTenant, ClientID: benchClient, ClientSecret: s.secret,
		AuthorityHost: s.gs.AuthorityHost(), GraphBaseURL: s.gs.GraphURL(),
		HTTPClient: s.gs.Client(),
	})
	if err != nil {
		return nil, err
	}
	client, err := graph.New(graph.Config{BaseURL: s.gs.GraphURL(), HTTPClient: s.gs.Client(), Credential: cred})
	if err != nil {
		return nil, err
	}
	var out []time.Duration
	for i := range warmup + n {
		t := wire.Target{TenantID: benchTenant, ManagedDeviceID: deviceID(1_000_000 + i)}
		start := time.Now()
		if _, err := client.RecoverPasscode(ctx, t); err != nil {
			return nil, fmt.Errorf("direct graph call: %w", err)
		}
		if i >= warmup {
			out = append(out, time.Since(start))
		}
	}
	return out, nil
}

// percentile is the p-th percentile (nearest rank) of sorted values.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(p/100*float64(len(sorted))+0.999999) - 1
	return sorted[min(max(rank, 0), len(sorted)-1)]
}

// ms formats d in milliseconds with two decimals.
func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond)) }
