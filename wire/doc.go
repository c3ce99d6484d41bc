// Package wire is what crosses the wire between recoverpasscode and the
// systems around it: the job a source submits, the result the worker
// answers with, the dead letter and the audit event it stores, how a job
// is decoded and validated, the Graph target a job names and its escaped
// path, and the names of every subject, stream and bucket.
//
// It imports only the standard library and uuid, so that a submitter (the
// enqueue command, the HTTP gateway, a batch) can depend on it without the
// engine behind it: no MSAL, no Prometheus, no NATS client. A change to a
// schema, to what a valid job is, or to a subject name goes here; what is
// done with a job goes in package job.
package wire
