// Package quota is the budget of each source: how many jobs a submitting
// system (a NATS source token such as "automation") may send to Graph in a
// sliding window, fleet-wide, so that a runaway automation cannot recover
// the passcodes of a whole fleet. RECOVER_SOURCE_LIMITS names the budgets
// (see ParseLimits); sources it does not name are unlimited.
//
// A job over its source's budget is held, not failed: the worker hands it
// back to the queue (without calling Graph or taking its idempotency key)
// and tries again when the budget allows, or sooner, to notice an
// operator's release. Each held job has a record, "held.<source>.<job>"
// in the bucket recoverpasscode_limits, which `enqueue held list` shows and
// `enqueue held release` marks released: a released job proceeds at its
// next delivery whatever the budget says.
//
// # State in the bucket
//
//   - "quota.<source>": the source's window log, the admissions whose
//     time is still inside the window, as [unix ms, count] pairs rounded up
//     to a hundredth of the window so that the value stays small for long
//     windows (an admission counts up to that much longer, never shorter),
//     and the budget they were taken under (the rate, as ParseLimits reads
//     it), written by each worker that takes a unit and by every worker
//     at start (Announce), so that a changed budget shows at once. The
//     gateway reads it
//     (Room, read-only) to answer 429 to a source over its budget instead
//     of accepting a job the workers would hold; a window without a rate
//     is no budget known to it.
//   - "admitted.<source>.<job>": the job was admitted; its redeliveries (a
//     retry, a worker that died) pass without taking another unit. It ages
//     out with the bucket's TTL (24 h).
//   - "held.<source>.<job>": the held job's record (Held).
//
// Every update is a compare-and-set, so the fleet admits at most N jobs of
// a source in any window. A worker that dies between taking a unit and
// writing the admitted marker loses that unit: the budget errs on the
// side of fewer calls.
package quota
