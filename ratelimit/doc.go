// Package ratelimit paces Graph calls across every worker process of the
// fleet. Intune allows 200 POSTs per 20 s per app per tenant; ten replicas
// with local token buckets would send ten times that and then retry in a
// herd. A Limiter instead keeps the state in a JetStream KeyValue bucket
// (see BucketConfig) shared by the whole fleet, and guarantees that no more
// than N calls for one (app, tenant) start in any window of the configured
// length, fleet-wide, while an idle fleet meeting a backlog may still use
// all N at once.
//
// # Window log
//
// The key "window.<app>.<tenant>" holds a sliding-window log: the grants
// whose permits may still share a window with a new call (N permits at
// most), each stamped with a time. A Limiter that needs
// permits reads the log, counts the stamps still inside the window and,
// if there is room, appends a grant of up to Config.Batch stamps with a
// conditional update at the revision it read. On conflict it rereads and
// retries after a little random jitter. When the log is full it sleeps
// until the oldest stamp leaves the window, plus a few random milliseconds
// so that the Limiters waiting for the same slot do not all write at once.
// Every Limiter also watches the window logs, so its copy is current: a
// grant costs a single update, and losing a race costs no extra read.
//
// # Stamps are the latest time a permit may be used
//
// A permit granted in a batch and used later could break the bound: N
// granted at 0 s and used at 1.9 s, then N more granted at 2.0 s, would put
// 2N calls inside 2 s of a 2 s window. So each stamp is the latest moment
// the permit may start a call, grant time + Config.Validity (by default
// min(Per/20, 250ms)), and a permit still unused by then is discarded.
// A call may therefore start only in [granted, stamp], and a grant at time
// t is allowed only while fewer than N stamps are later than t - window:
// every other permit's last possible use lies a full window before any use
// of the new one, so no N+1 calls can start within one window. The price
// is that a slot comes back up to Validity after its call, so a saturated
// fleet reaches about Per/(Per+Margin+Validity) of N per window: 96% at
// 20/1s, 97% at 20/2s, 98% at 200/20s.
//
// # Clocks
//
// Stamps are absolute times written by different hosts, so they must come
// from one clock. Each Limiter reads the time from a clock.Clock: its local
// clock corrected by the offset it measures against the NATS server's (the
// timestamp JetStream gives a probe key it writes, between two local
// readings), re-measured at least every 10 s while it grants permits. A
// host whose clock is seconds off thus stamps and prunes the log on the
// server's time like every other; what remains of the skew is half a KV
// round trip. The window a Limiter enforces is Per plus Config.Margin,
// which absorbs that remainder and the jitter between a call starting here
// and Graph counting its arrival. A Limiter logs the offset it measured at
// start, as a warning when it exceeds the Margin.
//
// # Pauses
//
// Pause writes "pause.<app>.<tenant>" with the time calls may resume, using
// a conditional update so that a later time extends a pause and an earlier
// one never shortens it. Every Limiter watches its app's pause keys (a KV
// watch, not polling) and Wait blocks for a paused tenant until the time
// has passed, re-checking whenever a pause changes. Other tenants keep
// flowing. A call that passed Wait just before a pause arrived is already
// on its way; nothing can recall it.
//
// # Sharing round trips
//
// Goroutines of one process waiting for the same tenant queue behind a
// single fetch goroutine, which asks for as many permits as there are
// waiters (at most Batch) in one update, hands them out in arrival order
// and keeps any left over (a waiter gave up) for the next Wait until they
// expire. A grant never exceeds the number of waiters, so an idle process
// does not hoard permits that others could use.
//
// # Keys
//
// App and tenant ids are lowercased and used as key tokens as they are
// when they are GUIDs; anything else is encoded (see keyToken), since keys
// allow only [-/_=.a-zA-Z0-9]. All Limiters of an app must use the same
// Rate, as each prunes the shared log to its own window.
package ratelimit
