package idempotency

import "context"

// Claim is Acquire without the mark in the claim's write, for the tests of
// the record's bookkeeping (a fresh record counts no attempt until a Call
// marks one): Await after it claims without the mark too.
func (s *Store) Claim(ctx context.Context, key, jobID string) (Claim, error) {
	return s.claim(ctx, key, jobID, Binding{}, false)
}
