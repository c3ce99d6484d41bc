package testsystem

import (
	"time"
)

// AssertFollowsDone waits for every follow to end: the follows stream then
// holds no record.
func (s *System) AssertFollowsDone() {
	t := s.t
	t.Helper()
	var left uint64
	ok := Eventually(10*time.Second, func() bool {
		stream, err := s.JS.Stream(t.Context(), s.Names.FollowsStream())
		if err != nil {
			t.Fatal(err)
		}
		info, err := stream.Info(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		left = info.State.Msgs
		return left == 0
	})
	if !ok {
		t.Errorf("%d follow records left in the follows stream", left)
	}
}
