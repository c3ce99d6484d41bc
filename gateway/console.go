package gateway

import (
	"net/http"
	"strings"
)

// withConsole serves Config.Console on every path the API does not route
// (its catch-all "/" pattern) outside /v1/, and the API on the others. A
// path under /v1/ that the API does not know stays the API's 404 problem.
func (s *Server) withConsole(api http.Handler) http.Handler {
	mux, ok := api.(*http.ServeMux)
	if s.cfg.Console == nil || !ok {
		return api
	}
	console := s.observed("console", s.cfg.Console)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, pattern := mux.Handler(r); pattern == "/" && r.URL.Path != "/v1" && !strings.HasPrefix(r.URL.Path, "/v1/") {
			console.ServeHTTP(w, r)
			return
		}
		api.ServeHTTP(w, r)
	})
}
