package dlq

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/recoverpasscode/recoverpasscode/batch"
	"github.com/recoverpasscode/recoverpasscode/wire"
)

// Options say how dead letters are replayed.
type Options struct {
	// NewKey gives each replay the key "<key>/r<DLQ sequence>" so that
	// Graph is called again; otherwise the job's key is kept.
	NewKey bool
	// IncludeRejected replays rejected jobs too, for when their cause was
	// fixed (e.g. the tenant was added to RECOVER_TENANTS); they are
	// skipped otherwise, as they would be rejected again.
	IncludeRejected bool
}

// Replay is the job a dead letter is replayed as, and where it goes.
type Replay struct {
	From    Letter
	Job     wire.Job
	Subject string
	// SameKeyStored says the replay keeps a key whose record holds the
	// failure: it will be answered with it without calling Graph.
	SameKeyStored bool
}

// Skip is a dead letter that is not replayed, and why.
type Skip struct {
	From Letter
	Why  string
}

// Plan is what replaying a selection does: the replays, the dead letters
// skipped, and how many older dead letters of the same jobs were left out.
type Plan struct {
	Replays    []Replay
	Skipped    []Skip
	Superseded int
}

// SameKeyStored counts the replays that will be answered from their key's
// record with the same failure.
func (p Plan) SameKeyStored() int {
	n := 0
	for _, r := range p.Replays {
		if r.SameKeyStored {
			n++
		}
	}
	return n
}

// Matched is the number of dead letters the selection matched.
func (p Plan) Matched() int { return len(p.Replays) + len(p.Skipped) + p.Superseded }

// PlanReplays plans the replay of letters (oldest first): only the latest
// dead letter of each job is replayed.
func PlanReplays(names wire.Names, letters []Letter, o Options) Plan {
	latest, superseded := LatestPerJob(letters)
	p := Plan{Superseded: superseded}
	for _, d := range latest {
		r, why := PlanOne(names, d, o)
		if why != "" {
			p.Skipped = append(p.Skipped, Skip{From: d, Why: why})
			continue
		}
		p.Replays = append(p.Replays, r)
	}
	return p
}

// PlanOne makes the replay of one dead letter, or says why it is skipped.
func PlanOne(names wire.Names, d Letter, o Options) (Replay, string) {
	if d.Result != nil && d.Result.Status == wire.Rejected && !o.IncludeRejected {
		return Replay{}, "rejected (" + batch.Message(*d.Result) + "); include rejected jobs once the cause is fixed"
	}
	if !wire.ValidToken(d.Source) || d.Source == "unknown" {
		return Replay{}, fmt.Sprintf("no source to submit it to (%q)", d.Source)
	}
	data := []byte(d.Job)
	if d.Job == "" {
		var err error
		if data, err = base64.StdEncoding.DecodeString(d.JobBase64); err != nil || len(data) == 0 {
			return Replay{}, "the dead letter holds no original message"
		}
	}
	j, err := wire.Decode(data, wire.Meta{MsgID: nats.Header(d.Headers).Get(jetstream.MsgIDHeader)})
	if err != nil {
		return Replay{}, "the original message is not a valid job: " + err.Error()
	}
	key := j.IdempotencyKey
	if d.Result != nil && d.Result.IdempotencyKey != "" {
		key = d.Result.IdempotencyKey // the key the worker used, whatever filled it
	}
	if o.NewKey {
		key = batch.ReplayKey(key, d.Seq)
	}
	j.ID = batch.ReplayID(d.JobID, d.Seq)
	j.IdempotencyKey = key
	j.ReplyTo = replayReplyTo(names, j.ReplyTo, d.JobID, j.ID)
	return Replay{From: d, Job: j, Subject: names.Jobs(d.Source), SameKeyStored: !o.NewKey && StoredFailure(d)}, ""
}

// replayReplyTo moves a reply subject in the results stream that ends with
// the old job id (a batch's, or an explicit default) to the new id; other
// reply subjects (an inbox) are kept.
func replayReplyTo(names wire.Names, replyTo, oldID, newID string) string {
	if replyTo == "" || !names.IsResult(replyTo) {
		return replyTo
	}
	if base, ok := strings.CutSuffix(replyTo, "."+oldID); ok {
		return base + "." + newID
	}
	return replyTo
}

// StoredFailure reports whether a dead letter's failure is kept in its
// key's record, so a replay with the same key is answered with it: Graph
// refused the call for good (a 4xx other than 401, 408 and 429, a 501 or
// 505), or the job was itself answered from the record.
func StoredFailure(d Letter) bool {
	r := d.Result
	if r == nil || r.Status != wire.Failed {
		return false
	}
	if r.Replayed {
		return true
	}
	if r.Graph == nil {
		return false
	}
	s := r.Graph.Status
	return (s >= 400 && s < 500 && s != 401 && s != 408 && s != 429) || s == 501 || s == 505
}

// Publish submits the replay to its source's jobs subject, with its id as
// Nats-Msg-Id so that a second replay of the same dead letter is stored
// once.
func Publish(ctx context.Context, js jetstream.JetStream, r Replay) error {
	if _, err := PublishJob(ctx, js, r.Subject, &r.Job); err != nil {
		return fmt.Errorf("replay #%d: %w", r.From.Seq, err)
	}
	return nil
}

// PublishJob publishes j to subject through JetStream with Nats-Msg-Id set
// to its id, and waits up to 10s for the stream's acknowledgement.
func PublishJob(ctx context.Context, js jetstream.JetStream, subject string, j *wire.Job) (*jetstream.PubAck, error) {
	data, err := json.Marshal(j)
	if err != nil {
		return nil, err
	}
	m := nats.NewMsg(subject)
	m.Data = data
	m.Header.Set(jetstream.MsgIDHeader, j.ID)
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	ack, err := js.PublishMsg(pctx, m)
	if errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders) {
		return nil, fmt.Errorf("publish to %s: no stream answered: is a worker running? (it creates the streams): %w", subject, err)
	}
	if err != nil {
		return nil, fmt.Errorf("publish to %s: %w", subject, err)
	}
	return ack, nil
}
