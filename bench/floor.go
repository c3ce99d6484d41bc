package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/recoverpasscode/recoverpasscode/graph"
	"github.com/recoverpasscode/recoverpasscode/idempotency"
	"github.com/recoverpasscode/recoverpasscode/wire"
)

// floor is the I/O the contract requires of each job, done by a bare
// consumer with none of the worker's logic: the raw ceiling shows what
// JetStream costs one stored result, the floor what the worker's mandatory
// work costs, and so how much of the gap between the worker and the raw
// ceiling is the worker's own. Per job it makes the same round trips and
// stores the same messages as the worker on its happy path: the
// idempotency record created (marked calling), the Graph call with an MSAL
// token over TLS, the record updated with the outcome, the result stored,
// two audit events (the call, the decision) published asynchronously, the
// job acked.
type floor struct {
	js     jetstream.JetStream
	names  wire.Names
	ledger *idempotency.Store
	graph  *graph.Client
}

// newFloor connects to what the worker environment names: the keys bucket,
// and Graph through AZURE_* and GRAPH_BASE_URL.
func newFloor(ctx context.Context, js jetstream.JetStream, names wire.Names) (*floor, error) {
	kv, err := js.KeyValue(ctx, names.KeysBucket())
	if err != nil {
		return nil, fmt.Errorf("floor: keys bucket: %w", err)
	}
	base := os.Getenv("GRAPH_BASE_URL")
	cred, err := graph.NewCredential(graph.CredentialConfig{
		TenantID: os.Getenv("AZURE_TENANT_ID"), ClientID: os.Getenv("AZURE_CLIENT_ID"),
		ClientSecret: os.Getenv("AZURE_CLIENT_SECRET"), AuthorityHost: os.Getenv("AZURE_AUTHORITY_HOST"),
		GraphBaseURL: base,
	})
	if err != nil {
		return nil, fmt.Errorf("floor: %w", err)
	}
	client, err := graph.New(graph.Config{BaseURL: base, Credential: cred})
	if err != nil {
		return nil, fmt.Errorf("floor: %w", err)
	}
	// The worker's own store, for the very records it writes; it makes
	// one Create for Acquire of a new key and one Update for Complete.
	ledger := idempotency.New(kv, idempotency.Config{Owner: "bench-floor"})
	return &floor{js: js, names: names, ledger: ledger, graph: client}, nil
}

func (f *floor) answer(msg jetstream.Msg) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var j wire.Job
	if err := json.Unmarshal(msg.Data(), &j); err != nil {
		return fmt.Errorf("floor: %w", err)
	}
	key := benchTenant + "/" + j.ID
	now := time.Now()
	claim, err := f.ledger.Acquire(ctx, key, j.ID)
	if err != nil {
		return fmt.Errorf("floor: claim: %w", err)
	}
	if claim.State != idempotency.Acquired {
		return fmt.Errorf("floor: claim: key %s is %s", key, claim.State)
	}
	var resp graph.Response
	var gerr error
	if _, err := claim.Lease.Call(ctx, nil, func(ctx context.Context) idempotency.Fate {
		resp, gerr = f.graph.RecoverPasscode(ctx, wire.Target{TenantID: benchTenant, ManagedDeviceID: j.ManagedDeviceID})
		if gerr != nil {
			return idempotency.Unknown
		}
		return idempotency.Acted
	}); err != nil {
		return fmt.Errorf("floor: %w", err)
	}
	if gerr != nil {
		return fmt.Errorf("floor: graph: %w", gerr)
	}
	res := rawResult(j.ID)
	res.ManagedDeviceID = j.ManagedDeviceID
	res.Graph = &wire.GraphOutcome{Status: resp.Status, RequestID: resp.RequestID, ClientRequestID: resp.ClientRequestID}
	result, err := json.Marshal(res)
	if err != nil {
		return err
	}
	if err := claim.Lease.Complete(ctx, string(res.Status), result); err != nil {
		return fmt.Errorf("floor: complete: %w", err)
	}
	m := nats.NewMsg(f.names.Result(source, j.ID))
	m.Data = result
	m.Header.Set(jetstream.MsgIDHeader, j.ID+"/result")
	if _, err := f.js.PublishMsg(ctx, m); err != nil {
		return fmt.Errorf("floor: store result: %w", err)
	}
	for _, kind := range []string{wire.KindGraphCall, wire.KindDecision} {
		e, err := json.Marshal(wire.NewAuditEvent(kind, &res, now))
		if err != nil {
			return err
		}
		a := nats.NewMsg(f.names.Audit(source, res.TenantID, res.ManagedDeviceID))
		a.Data = e
		a.Header.Set(jetstream.MsgIDHeader, j.ID+"/"+kind)
		if _, err := f.js.PublishMsgAsync(a); err != nil {
			return fmt.Errorf("floor: audit: %w", err)
		}
	}
	return msg.Ack()
}
