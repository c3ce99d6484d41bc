// Package gateway is the HTTP door of recoverpasscode: an http.Handler
// through which ticketing systems and automation submit jobs and follow
// them over HTTPS, for those that cannot speak NATS. It is stateless (any
// number of replicas behind a load balancer), holds no Graph credential and
// links neither MSAL nor the engine: it validates a job with the worker's
// own rules (package wire), publishes it to the jobs stream and reads the
// results stream, as any NATS submitter does.
//
//	gw, err := gateway.New(gateway.Config{NATS: nc, TenantID: tenant, Sources: sources})
//	err = gw.Serve(ctx, listener, 30*time.Second) // or http.Handler: gw
//
// Routes (the route table in server.go; openapi.json describes each, and
// a test keeps the two in step): POST /v1/jobs, GET /v1/jobs/{id},
// GET /v1/jobs, GET /v1/batches/{name}, GET /v1/openapi.json, /healthz,
// /readyz, /metrics.
//
// A caller is a source, named by its credential: an API key, stored only as
// its SHA-256 hash, or an Entra ID access token, verified with go-oidc
// against the tenant's published keys, whose application names the
// source. Every subject it touches holds that source, so a source sees
// only its own jobs.
//
// # What the gateway does in NATS
//
// For its least-privilege NATS user (NATSPermissions returns the lists,
// with writeback.NATSPermissions for the write-back that cmd/gateway runs
// beside it, explained in writeback/doc.go; <prefix> is RECOVER_PREFIX,
// <PREFIX> the same in upper case):
//
// Publishes (core NATS):
//   - <prefix>.jobs.<source>: each job, with Nats-Msg-Id = the job id,
//     expecting stream <PREFIX>_JOBS; the acknowledgement comes to an inbox.
//   - $KV.<prefix>_requests.<source>.<jobId>: the request record, created
//     with an expected last subject sequence of 0 (KV Create), or purged
//     after a publish that failed for a job nobody can retry.
//
// JetStream API requests (publishes whose replies come to an inbox):
//   - $JS.API.STREAM.INFO.KV_<prefix>_requests and
//     $JS.API.STREAM.INFO.<PREFIX>_RESULTS: look the bucket and the results
//     stream up (at the first request; /readyz; each list page).
//   - $JS.API.DIRECT.GET.KV_<prefix>_requests.$KV.<prefix>_requests.>: read
//     a request record (KV Get; also inside KV Create).
//   - $JS.API.STREAM.MSG.GET.<PREFIX>_RESULTS: the last result of a job's
//     subject (last_by_subj <prefix>.results.<source>.<id>, then
//     <prefix>.results.<source>.*.<id> for a batch's job).
//   - $JS.API.CONSUMER.CREATE.<PREFIX>_RESULTS.<name>.<prefix>.results.<source>.>
//     (and .<source>.* and .<source>.<batch>.>), with
//     $JS.API.CONSUMER.MSG.NEXT.<PREFIX>_RESULTS.<name> and
//     $JS.API.CONSUMER.DELETE.<PREFIX>_RESULTS.<name>: the list and batch
//     reads, each through a consumer of its own (no acks, in memory,
//     deleted at the end, else gone after 30s idle).
//   - $JS.API.CONSUMER.CREATE.KV_<prefix>_requests.<name>.$KV.<prefix>_requests.<source>.*,
//     with the same MSG.NEXT and DELETE on KV_<prefix>_requests: the
//     source's records, for the queued jobs of a list.
//   - $JS.API.STREAM.INFO.KV_<prefix>_limits, and
//     $JS.API.DIRECT.GET.KV_<prefix>_limits.$KV.<prefix>_limits.quota.> and
//     ….held.>: the workers' limits bucket, read only (quota.Store.Room
//     and HeldJob): a source's budget window, so that POST answers 429
//     to a source over its budget, and a queued job's held record, so
//     that GET says "held". It writes nothing there.
//
// Subscribes:
//   - <prefix>.results.<source>.*: the results of a source's jobs, for its
//     Prefer: wait requests: one subscription per source, made before the
//     source's first waited-for job is published and kept.
//   - <inbox prefix>.>: the replies above (NATS_INBOX_PREFIX, e.g.
//     _INBOX.gateway).
//
// It creates, updates or deletes no stream, bucket or durable consumer
// (the workers create the requests bucket with their streams: queue.Setup;
// write-back's durable consumers are writeback's), and never publishes a
// result, a dead letter or an audit event.
//
// Config.Ready lets the process add to /readyz what else it needs:
// cmd/gateway reports not ready until write-back has set up its consumers.
package gateway
