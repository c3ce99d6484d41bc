// Package job is the engine that processes one job, and the home of the
// retry policy. Handle decodes and validates the message (package wire),
// takes the key's lease (package idempotency, which owns the at-most-once
// protocol), waits for the shared rate limit, calls Graph under the lease,
// and says what the worker does with the message and which result it
// publishes.
//
// What a Graph answer means for the job (done, retry after a backoff or
// Retry-After, pause the tenant, refresh the token once, hand the job back,
// give up, fail) is decided in one place: the pure function decide in
// decide.go, whose table test lists every class of answer. A change to the
// retry policy goes there; its bounds and every other default are in
// Config (config.go), and New returns a Handler ready to use.
package job
