// Package follow confirms what a device did with a recoverPasscode action.
//
// Graph's 204 means Intune accepted the action; the device carries it out
// when it next checks in. For a followed job (its "follow": true, or its
// source's default) the worker, after storing the result, starts a follow:
// a Record in the follows stream (RECOVERPASSCODE_FOLLOWS, work-queue
// retention, one message per subject). A Follower consumes that stream:
// a Record whose next poll time has not come is handed back with the delay
// left (NakWithDelay); one that is due is polled with one read of the
// device's deviceActionResults through the fleet's read budget. A final
// actionState of the recoverPasscode action started at or after the call
// (done, failed, canceled, notSupported), or the follow deadline passing
// (state unknown), publishes the job's one Confirmation on
// <prefix>.confirmations.<source>.<jobId> into the confirmations stream,
// with Nats-Msg-Id "<jobId>/confirmation"; then the Record is acknowledged
// and so deleted. Otherwise the Record is replaced by its successor with
// the next poll time (the stream keeps one message per subject, so the
// publish itself retires the old one) and acknowledged.
//
// Nothing lives in memory: a Follower that dies leaves its Records
// unacknowledged, and JetStream delivers them again after the consumer's
// ack wait to whichever Follower is running. A Follower that died after
// publishing a confirmation but before acknowledging its Record leads the
// next one to read the same final state and publish it again under the
// same message id, which the stream's duplicate window (1 h, far longer
// than the ack wait) stores once. The cost of a death is a repeated read,
// never a lost or doubled confirmation, and never a POST: following makes
// no Graph writes at all.
//
// Polls back off: the first comes First (1 min) after the call, then each
// interval doubles, capped at Max (15 min), until For (24 h) has passed.
package follow
