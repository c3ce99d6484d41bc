// Package job is the engine that processes one job: it decodes and
// validates the message (package wire), holds the key's idempotency lease,
// waits for the shared rate limit, calls Graph with backoff, and says what
// the worker does with the message and which result it publishes.
package job
