// Package history reads the audit trail of one device: every Graph call
// and every terminal decision about it, from every source, newest first.
// It is the console's device page.
//
// # The index is the subject
//
// Every audit event is published on
// <prefix>.audit.<source>.<tenantId>.<managedDeviceId>.<yyyymmdd>
// (wire.Names.Audit), so the stream's own subject index finds one
// device's events, and nothing has to be kept in step with the stream:
// retention (the stream's MaxAge) ages the index with the events. A lookup
//
//  1. lists the device's subjects, one per source and day it was named,
//     with a stream info request filtered to
//     <prefix>.audit.*.<tenantId>.<managedDeviceId>.* (nats-server answers
//     from its subject index, without reading a message);
//  2. reads them by literal subject with direct gets, newest day first,
//     eight at a time, and stops once it holds limit events and the days
//     left are older.
//
// Both choices are measured (README, "A device's history"): nats-server
// keeps per subject only its first and last block, and per block only each
// subject's first and last message, so reading a subject visits every
// block between its first and last message (the day keeps that to a block
// or two), and a wildcard filter is matched against every message of a
// block whose subjects are mostly distinct (literal subjects are found in
// each block's subject index).
//
// # The newest N without reading everything
//
// JetStream reads forwards only. A subject with at most limit events (the
// usual case) is read in one request: a batch from the stream's start,
// which the server begins at the subject's first message. A subject with
// more (automation naming the same device again and again in one day) is
// not read whole: the batch's answer says how many it has, its newest
// message gives the end of its range, and a few one-message probes (each
// answering how many of its messages lie at or after a sequence) find a
// start with between limit and 2×limit messages after it, by
// interpolation and, when interpolation stalls, bisection; only those are
// read.
//
// # What it needs
//
// The audit stream must allow direct gets (queue.Setup sets AllowDirect;
// a worker of this version updates an existing stream at start), and the
// reader's NATS user needs Permissions. A direct get may be answered by
// any replica, so an event stored a moment ago may be missing from a
// lookup on a follower that has not applied it yet. Events are grouped by
// the day their worker stamped: an event stored just after midnight by a
// worker whose clock is behind counts as the day before, and could be
// left out of a history that stops at that day's boundary.
package history
