// Package history reads the audit trail of one device: every Graph call
// and every terminal decision about it, from every source, newest first.
// It is the console's device page.
//
// # The index is the subject
//
// Every audit event is published on
// <prefix>.audit.<source>.<tenantId>.<managedDeviceId> (wire.Names.Audit),
// so the stream's own per-subject index finds one device's events: the
// Reader asks for <prefix>.audit.*.<tenantId>.<managedDeviceId>
// (wire.Names.AuditOfDevice) with direct gets, and nats-server answers
// from its subject index and the blocks that hold that device's messages,
// never by scanning the stream. No second index has to be kept in step
// with the stream, and retention (the stream's MaxAge) ages the index
// with the events.
//
// # The newest N without reading everything
//
// JetStream reads forwards only. A device with at most limit events (the
// usual case) is read in one request: a batch from the stream's start,
// which the server begins at the device's first event. A chatty device
// (automation that names the same device again and again) is not read
// whole: the batch's answer says how many events the device has in all,
// the device's newest event gives the end of its range, and a few
// one-message probes (each answering how many of the device's events lie
// at or after a sequence) find a start with between limit and 2×limit
// events after it, by interpolation; only those are read. The bench
// (`go run ./bench --rows history`) measures both cases among 1,000,000
// events.
//
// # What it needs
//
// The audit stream must allow direct gets (queue.Setup sets AllowDirect;
// a worker of this version updates an existing stream at start), and the
// reader's NATS user needs Permissions. A direct get may be answered by
// any replica, so an event stored a moment ago may be missing from a
// lookup on a follower that has not applied it yet.
package history
