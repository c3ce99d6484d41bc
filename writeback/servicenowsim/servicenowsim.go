// Package servicenowsim is a ServiceNow Table API double, served over TLS
// on loopback, for the tests of write-back's ServiceNow adapter (as
// graph/graphsim is for Graph).
//
// It serves what the adapter uses, as strictly as the real instance and
// stricter where a loose request would hide a bug:
//
//   - GET /api/now/table/{table}?sysparm_query=number=<n>&sysparm_limit=..&sysparm_fields=..
//     finds records by number (case-insensitively, as an instance does).
//     Any other query is refused with 400: an encoded-query operator in a
//     ticket would show up here.
//   - PATCH /api/now/table/{table}/{sys_id} with {"work_notes": "…"} appends
//     a work note to the record's journal, which Notes reports.
//   - POST /oauth_token.do issues access tokens for the client credentials
//     grant.
//
// Every request must authenticate with the configured basic credentials or
// a token the double issued; errors have ServiceNow's JSON shape. Every
// method of Server is safe for concurrent use.
package servicenowsim

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Config describes a Server. The credentials left empty are refused.
type Config struct {
	// User and Password are the basic credentials the instance accepts.
	User, Password string
	// ClientID and ClientSecret are the OAuth client the token endpoint
	// accepts.
	ClientID, ClientSecret string
	// TokenLifetime is the lifetime of the access tokens. Defaults to 30m.
	TokenLifetime time.Duration
}

// Note is a work note written to a record.
type Note struct {
	Table, SysID, Number, Text string
	// Auth is how the request that wrote it authenticated: basic or oauth.
	Auth string
	At   time.Time
}

type record struct {
	sysID, number string
}

// Server is a running double. Create it with New; stop it with Close.
type Server struct {
	cfg Config
	srv *httptest.Server

	mu      sync.Mutex
	records map[string][]*record // by table
	notes   []Note
	tokens  map[string]time.Time // access token → expiry
	fault   func(*http.Request) int
	queries []string
	changed chan struct{}
}

// New starts a double on a random loopback port.
func New(cfg Config) *Server {
	if cfg.TokenLifetime <= 0 {
		cfg.TokenLifetime = 30 * time.Minute
	}
	s := &Server{cfg: cfg, records: map[string][]*record{}, tokens: map[string]time.Time{}, changed: make(chan struct{})}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/now/table/{table}", s.list)
	mux.HandleFunc("PATCH /api/now/table/{table}/{sysID}", s.patch)
	mux.HandleFunc("POST /oauth_token.do", s.token)
	s.srv = httptest.NewTLSServer(s.faulty(mux))
	return s
}

// URL is the instance's root URL.
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

// AddRecord creates a record numbered number in table and returns its
// sys_id.
func (s *Server) AddRecord(table, number string) string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	r := &record{sysID: hex.EncodeToString(b), number: number}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.records[table] = append(s.records[table], r)
	return r.sysID
}

// Notes returns every work note written, oldest first.
func (s *Server) Notes() []Note {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Note(nil), s.notes...)
}

// Queries returns every sysparm_query received, oldest first.
func (s *Server) Queries() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.queries...)
}

// SetFault makes the double answer a request with the status f returns
// for it (0: serve it normally) before looking at it. nil removes it.
func (s *Server) SetFault(f func(*http.Request) int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fault = f
}

func (s *Server) faulty(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		f := s.fault
		s.mu.Unlock()
		if f != nil {
			if status := f(r); status != 0 {
				fail(w, status, http.StatusText(status), "injected by the test")
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// fail answers with ServiceNow's error shape.
func fail(w http.ResponseWriter, status int, message, detail string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{
		"error":  map[string]string{"message": message, "detail": detail},
		"status": "failure",
	})
}

func reply(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// authenticate reports how r authenticated, or "" after answering 401.
func (s *Server) authenticate(w http.ResponseWriter, r *http.Request) string {
	if user, pass, ok := r.BasicAuth(); ok && s.cfg.User != "" &&
		subtle.ConstantTimeCompare([]byte(user), []byte(s.cfg.User)) == 1 &&
		subtle.ConstantTimeCompare([]byte(pass), []byte(s.cfg.Password)) == 1 {
		return "basic"
	}
	if tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		s.mu.Lock()
		exp, known := s.tokens[tok]
		s.mu.Unlock()
		if known && time.Now().Before(exp) {
			return "oauth"
		}
	}
	fail(w, http.StatusUnauthorized, "User Not Authenticated", "Required to provide Auth information")
	return ""
}

// numberQuery is the only encoded query the double serves.
var numberQuery = regexp.MustCompile(`^number=([A-Za-z0-9_-]+)$`)

func (s *Server) list(w http.ResponseWriter, r *http.Request) {
	if s.authenticate(w, r) == "" {
		return
	}
	if !strings.Contains(r.Header.Get("Accept"), "application/json") {
		fail(w, http.StatusNotAcceptable, "Not Acceptable", "ask for application/json")
		return
	}
	q := r.URL.Query()
	for k := range q {
		if k != "sysparm_query" && k != "sysparm_limit" && k != "sysparm_fields" {
			fail(w, http.StatusBadRequest, "Unexpected parameter", k)
			return
		}
	}
	query := q.Get("sysparm_query")
	s.mu.Lock()
	s.queries = append(s.queries, query)
	s.mu.Unlock()
	m := numberQuery.FindStringSubmatch(query)
	if m == nil || len(q["sysparm_query"]) != 1 {
		fail(w, http.StatusBadRequest, "Invalid query", "the double serves sysparm_query=number=<number> only")
		return
	}
	limit, err := strconv.Atoi(q.Get("sysparm_limit"))
	if err != nil || limit < 1 {
		fail(w, http.StatusBadRequest, "Invalid sysparm_limit", "want a positive number")
		return
	}
	if f := q.Get("sysparm_fields"); f != "sys_id,number" {
		fail(w, http.StatusBadRequest, "Invalid sysparm_fields", "the double serves sys_id,number")
		return
	}
	s.mu.Lock()
	var found []map[string]string
	for _, rec := range s.records[r.PathValue("table")] {
		if strings.EqualFold(rec.number, m[1]) && len(found) < limit {
			found = append(found, map[string]string{"sys_id": rec.sysID, "number": rec.number})
		}
	}
	s.mu.Unlock()
	if found == nil {
		found = []map[string]string{}
	}
	reply(w, map[string]any{"result": found})
}

func (s *Server) patch(w http.ResponseWriter, r *http.Request) {
	auth := s.authenticate(w, r)
	if auth == "" {
		return
	}
	if r.Header.Get("Content-Type") != "application/json" {
		fail(w, http.StatusUnsupportedMediaType, "Unsupported Media Type", "send application/json")
		return
	}
	var body map[string]any
	dec := json.NewDecoder(io.LimitReader(r.Body, 1<<20))
	if err := dec.Decode(&body); err != nil {
		fail(w, http.StatusBadRequest, "Exception while reading request", err.Error())
		return
	}
	text, ok := body["work_notes"].(string)
	if len(body) != 1 || !ok || strings.TrimSpace(text) == "" {
		fail(w, http.StatusBadRequest, "Invalid body", "the double accepts {\"work_notes\": \"<text>\"} only")
		return
	}
	table, id := r.PathValue("table"), r.PathValue("sysID")
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, rec := range s.records[table] {
		if rec.sysID == id {
			s.notes = append(s.notes, Note{Table: table, SysID: id, Number: rec.number, Text: text, Auth: auth, At: time.Now()})
			close(s.changed)
			s.changed = make(chan struct{})
			reply(w, map[string]any{"result": map[string]string{"sys_id": id, "number": rec.number}})
			return
		}
	}
	fail(w, http.StatusNotFound, "No Record found", "Record doesn't exist or ACL restricts the record retrieval")
}

func (s *Server) token(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		fail(w, http.StatusBadRequest, "invalid_request", err.Error())
		return
	}
	id, secret := r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	if r.PostForm.Get("grant_type") != "client_credentials" || s.cfg.ClientID == "" ||
		subtle.ConstantTimeCompare([]byte(id), []byte(s.cfg.ClientID)) != 1 ||
		subtle.ConstantTimeCompare([]byte(secret), []byte(s.cfg.ClientSecret)) != 1 {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = io.WriteString(w, `{"error_description":"access_denied","error":"invalid_client"}`)
		return
	}
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	tok := hex.EncodeToString(b)
	s.mu.Lock()
	s.tokens[tok] = time.Now().Add(s.cfg.TokenLifetime)
	s.mu.Unlock()
	reply(w, map[string]any{
		"access_token": tok, "token_type": "Bearer", "scope": "useraccount",
		"expires_in": fmt.Sprint(int(s.cfg.TokenLifetime.Seconds())),
	})
}

// WaitNotes blocks until done reports true of the work notes written so far, checking
// after each one, or until ctx ends.
func (s *Server) WaitNotes(ctx context.Context, done func([]Note) bool) error {
	for {
		s.mu.Lock()
		ok := done(s.notes)
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
