package graphsim

// SetLimit changes, from the next call on, how many recoverPasscode calls
// one app may make in one tenant in any Window (Config.Limit; negative: no
// limit), as when another app that shares the tenant's budget starts or
// stops. Calls already admitted stay in the window and count against the
// new limit.
func (s *Server) SetLimit(limit int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.limits.perApp = limit
}
