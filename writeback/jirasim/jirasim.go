// Package jirasim is a Jira Cloud REST API double, served over TLS on
// loopback, for the tests of write-back's Jira Service Management adapter
// (as graph/graphsim is for Graph).
//
// It serves POST /rest/api/3/issue/{key}/comment as Jira does where the
// adapter can observe it: the request must authenticate with the
// configured email and API token (basic) or bearer token, carry JSON, and
// hold a body in Atlassian Document Format (a doc of version 1 whose
// blocks are paragraphs of text); an unknown issue is 404 with Jira's
// error shape. Comments reports what was written, with whether it was an
// internal note (the sd.public.comment property). Every method of Server
// is safe for concurrent use.
package jirasim

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"time"
)

// Config describes a Server. The credentials left empty are refused.
type Config struct {
	// Email and APIToken are the basic credentials the site accepts.
	Email, APIToken string
	// Bearer is the bearer token the site accepts.
	Bearer string
}

// Comment is a comment added to an issue.
type Comment struct {
	Key string
	// Text is the document's paragraphs, one per line.
	Text string
	// Internal is true for an internal note (sd.public.comment internal).
	Internal bool
	// Auth is how the request authenticated: basic or bearer.
	Auth string
	At   time.Time
}

// Server is a running double. Create it with New; stop it with Close.
type Server struct {
	cfg Config
	srv *httptest.Server

	mu       sync.Mutex
	issues   map[string]bool
	comments []Comment
	fault    func(*http.Request) int
	changed  chan struct{}
}

// New starts a double on a random loopback port.
func New(cfg Config) *Server {
	s := &Server{cfg: cfg, issues: map[string]bool{}, changed: make(chan struct{})}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /rest/api/3/issue/{key}/comment", s.comment)
	s.srv = httptest.NewTLSServer(mux)
	return s
}

// URL is the site's URL.
func (s *Server) URL() string { return s.srv.URL }

// TLSConfig trusts the double's certificate.
func (s *Server) TLSConfig() *tls.Config {
	pool := x509.NewCertPool()
	pool.AddCert(s.srv.Certificate())
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
}

// Certificate is the certificate the double presents.
func (s *Server) Certificate() *x509.Certificate { return s.srv.Certificate() }

// Close stops the double.
func (s *Server) Close() { s.srv.Close() }

// AddIssue creates an issue with the key.
func (s *Server) AddIssue(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.issues[key] = true
}

// Comments returns every comment added, oldest first.
func (s *Server) Comments() []Comment {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Comment(nil), s.comments...)
}

// SetFault makes the double answer a request with the status f returns
// for it (0: serve it normally). nil removes it.
func (s *Server) SetFault(f func(*http.Request) int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fault = f
}

// fail answers with Jira's error shape.
func fail(w http.ResponseWriter, status int, messages ...string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"errorMessages": messages, "errors": map[string]string{}})
}

func (s *Server) authenticate(r *http.Request) string {
	if email, token, ok := r.BasicAuth(); ok && s.cfg.Email != "" &&
		subtle.ConstantTimeCompare([]byte(email), []byte(s.cfg.Email)) == 1 &&
		subtle.ConstantTimeCompare([]byte(token), []byte(s.cfg.APIToken)) == 1 {
		return "basic"
	}
	if tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok && s.cfg.Bearer != "" &&
		subtle.ConstantTimeCompare([]byte(tok), []byte(s.cfg.Bearer)) == 1 {
		return "bearer"
	}
	return ""
}

// node is an ADF node as the double reads it.
type node struct {
	Type    string          `json:"type"`
	Version int             `json:"version"`
	Text    string          `json:"text"`
	Content []node          `json:"content"`
	Attrs   json.RawMessage `json:"attrs"`
	Marks   json.RawMessage `json:"marks"`
}

type commentRequest struct {
	Body       *node `json:"body"`
	Properties []struct {
		Key   string          `json:"key"`
		Value json.RawMessage `json:"value"`
	} `json:"properties"`
	Visibility json.RawMessage `json:"visibility"`
}

func (s *Server) comment(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	f := s.fault
	s.mu.Unlock()
	if f != nil {
		if status := f(r); status != 0 {
			fail(w, status, "injected by the test")
			return
		}
	}
	auth := s.authenticate(r)
	if auth == "" {
		w.Header().Set("WWW-Authenticate", `Basic realm="protected-area"`)
		fail(w, http.StatusUnauthorized, "You do not have the permission to see the specified issue.", "Login Required")
		return
	}
	if r.Header.Get("Content-Type") != "application/json" {
		fail(w, http.StatusUnsupportedMediaType, "Content-Type must be application/json")
		return
	}
	var req commentRequest
	dec := json.NewDecoder(io.LimitReader(r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		fail(w, http.StatusBadRequest, "INVALID_INPUT: "+err.Error())
		return
	}
	text, err := documentText(req.Body)
	if err != nil {
		fail(w, http.StatusBadRequest, "INVALID_INPUT: "+err.Error())
		return
	}
	internal := false
	for _, p := range req.Properties {
		if p.Key == "sd.public.comment" {
			var v struct{ Internal bool }
			if json.Unmarshal(p.Value, &v) != nil {
				fail(w, http.StatusBadRequest, "sd.public.comment: want {\"internal\": bool}")
				return
			}
			internal = v.Internal
		}
	}
	key := r.PathValue("key")
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.issues[key] {
		fail(w, http.StatusNotFound, "Issue does not exist or you do not have permission to see it.")
		return
	}
	s.comments = append(s.comments, Comment{Key: key, Text: text, Internal: internal, Auth: auth, At: time.Now()})
	close(s.changed)
	s.changed = make(chan struct{})
	id := 10000 + len(s.comments)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	_ = json.NewEncoder(w).Encode(map[string]any{
		"id": fmt.Sprint(id), "self": fmt.Sprintf("%s/rest/api/3/issue/%s/comment/%d", s.srv.URL, key, id), "body": req.Body,
	})
}

// documentText checks an ADF document the way Jira refuses bad ones, for
// the nodes a comment of text uses, and returns its paragraphs' text.
func documentText(doc *node) (string, error) {
	if doc == nil || doc.Type != "doc" || doc.Version != 1 {
		return "", fmt.Errorf("body: want an ADF document {\"type\":\"doc\",\"version\":1,...}")
	}
	if len(doc.Content) == 0 {
		return "", fmt.Errorf("body: the document is empty")
	}
	var lines []string
	for i, p := range doc.Content {
		if p.Type != "paragraph" {
			return "", fmt.Errorf("body.content[%d]: the double accepts paragraphs, not %q", i, p.Type)
		}
		var line strings.Builder
		for j, t := range p.Content {
			if t.Type != "text" || t.Text == "" || len(t.Content) > 0 {
				return "", fmt.Errorf("body.content[%d].content[%d]: want a text node with non-empty text", i, j)
			}
			line.WriteString(t.Text)
		}
		lines = append(lines, line.String())
	}
	return strings.Join(lines, "\n"), nil
}

// WaitComments blocks until done reports true of the comments written so far, checking
// after each one, or until ctx ends.
func (s *Server) WaitComments(ctx context.Context, done func([]Comment) bool) error {
	for {
		s.mu.Lock()
		ok := done(s.comments)
		ch := s.changed
		s.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ch:
		}
	}
}
