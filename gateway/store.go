package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/recoverpasscode/recoverpasscode/quota"
	"github.com/recoverpasscode/recoverpasscode/wire"
)

// errUnavailable marks a NATS failure: the request may be retried.
var errUnavailable = errors.New("gateway: NATS is unavailable")

// store is the gateway's view of JetStream: the requests bucket, the
// results stream and the jobs subjects. It looks the bucket and stream up
// on first use (the workers create them) and keeps them. It is safe for
// concurrent use.
type store struct {
	nc      *nats.Conn
	js      jetstream.JetStream
	names   wire.Names
	timeout time.Duration

	mu            sync.Mutex
	requests      jetstream.KeyValue
	results       jetstream.Stream
	confirmations jetstream.Stream
	budgets       *quota.Store // on the workers' limits bucket, read only
}

func newStore(nc *nats.Conn, names wire.Names, timeout time.Duration) (*store, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("gateway: jetstream: %w", err)
	}
	return &store{nc: nc, js: js, names: names, timeout: timeout}, nil
}

// unavailable is the 503 answered when NATS fails a read.
func unavailable(err error) *problemError {
	detail := "NATS did not answer: retry shortly"
	if errors.Is(err, errNotSetUp) {
		detail = "the streams or the requests bucket do not exist yet: a worker creates them when it starts; retry later"
	}
	return newProblem(ProblemUnavailable, http.StatusServiceUnavailable, "%s", detail).withRetryAfter(2 * time.Second)
}

// unavailableSubmit is the 503 answered when NATS fails a submission.
func unavailableSubmit(err error) *problemError {
	p := unavailable(err)
	p.p.Detail += "; nothing was accepted: send the same request again, with the same Idempotency-Key so that it cannot be doubled"
	return p
}

// errNotSetUp means the workers have not created the objects yet.
var errNotSetUp = errors.New("gateway: JetStream objects not set up")

// connected fails fast when the connection is down, rather than waiting
// for a timeout on every request.
func (st *store) connected() error {
	if !st.nc.IsConnected() {
		return fmt.Errorf("%w: not connected", errUnavailable)
	}
	return nil
}

func (st *store) wrap(err error) error {
	if errors.Is(err, jetstream.ErrStreamNotFound) || errors.Is(err, jetstream.ErrBucketNotFound) {
		return fmt.Errorf("%w: %w", errNotSetUp, err)
	}
	return fmt.Errorf("%w: %w", errUnavailable, err)
}

// bucket returns the requests bucket.
func (st *store) bucket(ctx context.Context) (jetstream.KeyValue, error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.requests != nil {
		return st.requests, nil
	}
	if err := st.connected(); err != nil {
		return nil, err
	}
	kv, err := st.js.KeyValue(ctx, st.names.RequestsBucket())
	if err != nil {
		return nil, st.wrap(err)
	}
	st.requests = kv
	return kv, nil
}

// budgetStore returns a quota.Store on the workers' limits bucket, which
// the gateway only reads (quota.Store.Room and HeldJob): the source
// budgets and held jobs. It enforces no limits of its own.
func (st *store) budgetStore(ctx context.Context) (*quota.Store, error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.budgets != nil {
		return st.budgets, nil
	}
	if err := st.connected(); err != nil {
		return nil, err
	}
	kv, err := st.js.KeyValue(ctx, st.names.LimitsBucket())
	if err != nil {
		return nil, st.wrap(err)
	}
	st.budgets = quota.New(st.js, kv, nil)
	return st.budgets, nil
}

// resultsStream returns the results stream.
func (st *store) resultsStream(ctx context.Context) (jetstream.Stream, error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.results != nil {
		return st.results, nil
	}
	if err := st.connected(); err != nil {
		return nil, err
	}
	s, err := st.js.Stream(ctx, st.names.ResultsStream())
	if err != nil {
		return nil, st.wrap(err)
	}
	st.results = s
	return s, nil
}

// ready reports what keeps the store from serving, for /readyz.
func (st *store) ready(ctx context.Context) []string {
	if err := st.connected(); err != nil {
		return []string{"nats: not connected"}
	}
	var out []string
	if _, err := st.bucket(ctx); err != nil {
		out = append(out, "jetstream: bucket "+st.names.RequestsBucket()+": "+err.Error())
	}
	if _, err := st.resultsStream(ctx); err != nil {
		out = append(out, "jetstream: stream "+st.names.ResultsStream()+": "+err.Error())
	}
	return out
}

// lastResult returns the latest result stored under subject, or ok false
// when there is none.
func (st *store) lastResult(ctx context.Context, subject string) (res wire.Result, ok bool, err error) {
	stream, err := st.resultsStream(ctx)
	if err != nil {
		return res, false, err
	}
	if err := st.connected(); err != nil {
		return res, false, err
	}
	ctx, cancel := context.WithTimeout(ctx, st.timeout)
	defer cancel()
	msg, err := stream.GetLastMsgForSubject(ctx, subject)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return res, false, nil
	}
	if err != nil {
		return res, false, st.wrap(err)
	}
	if err := json.Unmarshal(msg.Data, &res); err != nil || res.JobID == "" {
		return res, false, fmt.Errorf("gateway: the message on %s is not a result", msg.Subject)
	}
	return res, true, nil
}

// confirmation reads a followed job's confirmation,
// <prefix>.confirmations.<source>.<jobId>; none while it is being followed
// (and none when the confirmations stream does not exist: no worker that
// follows has started).
func (st *store) confirmation(ctx context.Context, source, jobID string) (c *wire.Confirmation, err error) {
	if err := st.connected(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, st.timeout)
	defer cancel()
	st.mu.Lock()
	stream := st.confirmations
	st.mu.Unlock()
	if stream == nil {
		stream, err = st.js.Stream(ctx, st.names.ConfirmationsStream())
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			return nil, nil
		}
		if err != nil {
			return nil, st.wrap(err)
		}
		st.mu.Lock()
		st.confirmations = stream
		st.mu.Unlock()
	}
	subject := st.names.Confirmation(source, jobID)
	msg, err := stream.GetLastMsgForSubject(ctx, subject)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, st.wrap(err)
	}
	c = new(wire.Confirmation)
	if err := json.Unmarshal(msg.Data, c); err != nil || c.JobID != jobID {
		return nil, fmt.Errorf("gateway: the message on %s is not a confirmation", subject)
	}
	return c, nil
}

// publishJob publishes a job with its id as Nats-Msg-Id, so that JetStream
// stores it once within the duplicate window however often it is sent,
// and returns once the jobs stream has acknowledged it.
func (st *store) publishJob(ctx context.Context, source string, j *wire.Job, traceparent string) error {
	if err := st.connected(); err != nil {
		return err
	}
	data, err := json.Marshal(j)
	if err != nil {
		return fmt.Errorf("gateway: encode job: %w", err)
	}
	m := nats.NewMsg(st.names.Jobs(source))
	m.Data = data
	m.Header.Set(jetstream.MsgIDHeader, j.ID)
	if traceparent != "" {
		m.Header.Set("traceparent", traceparent)
	}
	ctx, cancel := context.WithTimeout(ctx, st.timeout)
	defer cancel()
	if _, err := st.js.PublishMsg(ctx, m, jetstream.WithExpectStream(st.names.JobsStream())); err != nil {
		if errors.Is(err, jetstream.ErrNoStreamResponse) {
			return fmt.Errorf("%w: %w", errNotSetUp, err)
		}
		return st.wrap(err)
	}
	return nil
}
