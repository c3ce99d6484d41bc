// Package ratelimit paces Graph calls across every worker process of the
// fleet. Intune allows 200 POSTs per 20 s per app per tenant; ten replicas
// with local token buckets would send ten times that and then retry in a
// herd. A Limiter instead keeps the state in a JetStream KeyValue bucket
// (see BucketConfig) shared by the whole fleet, and guarantees that no more
// than N calls for one (app, tenant) start in any window of the configured
// length, fleet-wide, while an idle fleet meeting a backlog may still use
// all N at once (or Config.Burst of them). Within N, the fleet learns how
// much of the tenant's budget Graph actually leaves it, from Graph's 429s.
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
// # Arrivals, not starts
//
// Graph counts a call when it arrives, so whatever lies between a permit
// and Graph reading the call stretches the window. Measured with ten
// tenants at 20/2s, three processes and the Graph stand-in on one loaded
// host: the first calls of each process waited for new TLS connections
// and were written up to 65 ms after their permits; on a host with a load
// of 20 on 2 cores the stand-in read some calls up to 270 ms after they
// were written. Either let a 21st call into one tenant's 2 s window.
// Callers therefore do everything else first (package job gets the token
// and marks the idempotency record before it takes a permit, so that only
// the HTTP write follows it) and report what still happened, from the
// HTTP client's trace hooks: Wrote, when the request was written, and
// Answered, when the answer began to arrive. A call written after its
// permit's stamp has its stamp moved to the write. A call reached Graph
// no later than its answer less the least write-to-answer time of the
// last ten seconds of answers (zero for a process's first three seconds
// of them): a call whose stamp is earlier than that, less half the Margin,
// has its stamp moved there, however far. Measured with ten tenants at
// 20/2s and the stand-in under the race detector beside six busy loops on
// 2 cores, it read calls up to 356 ms after they were written; a least
// that a spell of slow answers could raise (to 35–45 ms where the fastest
// took 1 ms), or a move capped at a tenth of the window, let a 21st call
// into a window in 5 runs of 10, a windowed minimum and no cap in none of
// 10. A call still unanswered half a window after its stamp may reach
// Graph at any moment: its stamp is moved to the present then, and every
// half window until it is answered or the caller reports it Ended (a
// minute at most). A move is made in the shared log by the tenant's
// fetch goroutine within a KV round trip, and a grant that could rely on
// the old stamp comes a whole window after it, at least half a window
// after the move was due, so the bound holds unless a process stalls for
// half a window in between.
// The Limiter also stamps later permits by the recent worst gap between
// permit and write (up to a tenth of the window), so that few calls need
// moving: a host that writes late costs throughput, not the bound. It adds
// the uncertainty of its clock's last measurement against the server's
// (half a KV round trip, tens of milliseconds on a loaded host) to the
// stamps and to the window it counts, since two processes may correct
// their clocks by that much differently.
//
// # Pauses
//
// Pause writes "pause.<app>.<tenant>" with the time calls may resume, using
// a conditional update so that a later time extends a pause and an earlier
// one never shortens it. Every Limiter watches its app's pause keys (a KV
// watch, not polling) and Wait blocks for a paused tenant until the time
// has passed, re-checking whenever a pause changes. Other tenants keep
// flowing. A call that passed Wait just before a pause arrived is already
// on its way; nothing can recall it. The Limiter that sets a pause holds
// its own calls before it writes the pause, so that its next calls do not
// wait for the round trips.
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
// # Learning the budget
//
// Intune's 200 per 20 s per app is a ceiling, not a promise: the tenant's
// 400 per 20 s is shared by every app, so what is left for this one is
// often less, and unknown. Each (app, tenant) therefore has a learned rate,
// "budget.<app>.<tenant>" (see budget), the calls per window the fleet
// allows itself, never above N; the window log is enforced at the learned
// rate. It is written with conditional updates and watched by every
// Limiter, so one worker's 429 slows every worker, and it outlives the
// fleet: a fleet starting cold begins from what it last learned.
//
// What we took from the AWS SDKs' adaptive retry mode: a client-side rate
// that a throttling answer cuts multiplicatively (their beta, 0.7) and that
// success grows back along a CUBIC curve (concave up to the rate of the
// last throttle, flat near it, then convex beyond), so that the rate stays
// near the wall and probes above it slowly at first (we keep its concave
// climb back to the wall, not its probing above it: see below); and a
// token bucket in front of the calls. From the SRE book's client-side throttling: throttle
// before the server has to, and decide from what the server accepted, not
// from what was asked. Where this does better:
//
//   - It is one rate for the fleet, not one per client: ten workers learn
//     once, and a cut happens once per episode. A 429 to a call that Wait
//     let go before the last cut's pause ended belongs to that cut and
//     changes nothing, so a burst of 429s (or three workers seeing them)
//     is one cut, not thirty (Throttled). Unless that call was let go
//     before the one the cut learned from: the calls in between were
//     refused too, not accepted, and its lower estimate refines the cut
//     (the 429s of one burst come back in any order, to any worker).
//   - It learns how much Graph accepted rather than only that it refused:
//     the window log holds every permit, and Retry-After says when the
//     oldest call Graph counted leaves its window, hence which calls it
//     counted: Per less Retry-After (less a second, as Retry-After is
//     rounded up to whole seconds) before the 429. The cut goes to that
//     count (at most halving the rate at once), and the wall of the curve
//     is put there, so the fleet resumes at the budget it found. Without
//     that estimate (no log, or a Retry-After longer than the window) the
//     cut is the plain 0.7, and CUBIC's concave climb brings the rate
//     back to the wall.
//   - It probes above a wall Graph confirmed rarely, and then fast. A probe
//     that meets the wall costs more than the call: the tenant pauses for
//     Graph's answer and a Retry-After of whole seconds (0.2 to 0.9 s at
//     20/2s with Graph at 300 ms), and the cubic we had, one call over the
//     wall five windows after a cut, spent 4–8% of the budget on those
//     pauses. But a cubic slow to its first probe is slow to find a budget
//     that grew too: its time to one call over the wall is cbrt(1/C), to 18
//     over it only 2.6 times that. So after a cut the rate holds at the wall
//     for 10 windows of use (holdWindows), then goes one call over it, and
//     while Graph accepts, the excess doubles at each growth step, twice a
//     window (1, 3, 7, 15, ...), like TCP's slow start: a wall still there
//     costs one 429 every eleven windows (1–4% of the budget), and when the
//     other app stops a fleet at half of N is back at 95% of it 12.1 windows
//     after its last cut at worst (24 s at 20/2s). An overshoot costs
//     little, since the 429 that ends it says how much Graph accepted.
//   - Growth is clocked by windows of use, not by wall time: a tenant idle
//     overnight does not wake up at N and burst into the wall it learned.
//     Nor does it resume above the wall in the middle of a probe: a probe
//     gone two windows without a grant starts again from the wall (as TCP
//     validates its window after idle, RFC 7661), so a fleet restarted
//     from the bucket begins at the last budget Graph confirmed.
//   - Pacing (Config.Burst, a GCRA cell kept in the window log, so also
//     fleet-wide) spreads a backlog's first window: after the burst,
//     permits come one by one at the learned rate. A budget lower than
//     the learned one is then found by a call or two, not by a burst of
//     429s (plus the calls sent during one Graph round trip):
//     the acceptance test has a fleet told 40/2s meet a real 20/2s with
//     under 2% of its calls throttled.
//
// The learned rate is a float (calls per window) and the window allows its
// integer part; growth is written at most twice per window per tenant, and
// a line is logged when the rate moves by more than 20% since the last
// line. Delete the budget key to forget what was learned.
//
// # Keys
//
// App and tenant ids are lowercased and used as key tokens as they are
// when they are GUIDs; anything else is encoded (see keyToken), since keys
// allow only [-/_=.a-zA-Z0-9]. All Limiters of an app must use the same
// Rate, as each prunes the shared log to its own window.
package ratelimit
