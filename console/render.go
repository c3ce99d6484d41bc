package console

import (
	"bytes"
	"embed"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/recoverpasscode/recoverpasscode/wire"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// staticHandler serves the embedded stylesheet and script, cached for a
// day (they change only with the binary).
func staticHandler() http.Handler {
	sub, _ := fs.Sub(staticFS, "static")
	files := http.StripPrefix("/static/", http.FileServerFS(sub))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=86400")
		files.ServeHTTP(w, r)
	})
}

var funcs = template.FuncMap{
	"when": func(t time.Time) string {
		if t.IsZero() {
			return "–"
		}
		return t.UTC().Format("2006-01-02 15:04:05Z")
	},
	"ago": func(t time.Time) string {
		if t.IsZero() {
			return "–"
		}
		d := time.Since(t).Round(time.Second)
		if d < 0 {
			return "in " + (-d).String()
		}
		return d.String() + " ago"
	},
	"pct": func(n, total int) int {
		if total <= 0 {
			return 0
		}
		return n * 100 / total
	},
	"q":        url.QueryEscape,
	"p":        url.PathEscape,
	"dash":     func(s string) string { return orDash(s) },
	"statusOf": func(s wire.Status) string { return string(s) },
	"f1":       func(f float64) string { return fmt.Sprintf("%.1f", f) },
	"upper":    strings.ToUpper,
	"list":     func(v ...string) []string { return v },
}

// pages are the templates, each the layout with one page's content.
var pages = map[string]*template.Template{}

func init() {
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		panic(err)
	}
	for _, n := range names {
		base := strings.TrimSuffix(strings.TrimPrefix(n, "templates/"), ".html")
		if base == "layout" {
			continue
		}
		pages[base] = template.Must(template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", n))
	}
}

// view is what every page gets: who is signed in, the token its forms
// carry, whether actions are offered, and the page's own data.
type view struct {
	Title    string
	Nav      string
	Session  *session
	CSRF     string
	CanAct   bool
	ReadOnly bool
	Error    string
	Data     any
}

// render writes page name with data, as a whole page, or only its "live"
// block when fragment is set (the part a page refreshes without reload).
func (s *Server) render(w http.ResponseWriter, r *http.Request, sess *session, status int, name, title string, data any) {
	s.renderTemplate(w, sess, status, name, "layout.html", title, data)
}

func (s *Server) renderFragment(w http.ResponseWriter, sess *session, name string, data any) {
	s.renderTemplate(w, sess, http.StatusOK, name, "live", "", data)
}

func (s *Server) renderTemplate(w http.ResponseWriter, sess *session, status int, name, tmpl, title string, data any) {
	v := view{Title: title, Nav: name, Session: sess, ReadOnly: s.cfg.ReadOnly, Data: data}
	if sess != nil {
		v.CSRF = s.seal.csrfToken(sess)
		v.CanAct = s.canAct(sess)
	}
	var buf bytes.Buffer
	if err := pages[name].ExecuteTemplate(&buf, tmpl, v); err != nil {
		s.log.Error().Err(err).Str("page", name).Msg("render")
		http.Error(w, "the page could not be rendered", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// renderError answers with a page that says msg.
func (s *Server) renderError(w http.ResponseWriter, r *http.Request, sess *session, status int, msg string) {
	title := http.StatusText(status)
	if status == http.StatusOK {
		title = "Console"
	}
	v := view{Title: title, Session: sess, ReadOnly: s.cfg.ReadOnly, Error: msg}
	if sess != nil {
		v.CSRF = s.seal.csrfToken(sess)
	}
	var buf bytes.Buffer
	if err := pages["message"].ExecuteTemplate(&buf, "layout.html", v); err != nil {
		http.Error(w, msg, status)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// unavailable answers 503 for a NATS failure a page could not get past.
func (s *Server) unavailable(w http.ResponseWriter, r *http.Request, sess *session, what string, err error) {
	s.log.Warn().Err(err).Str("what", what).Msg("console: NATS read failed")
	s.renderError(w, r, sess, http.StatusServiceUnavailable, "NATS could not answer ("+what+"): "+truncate(err.Error(), 200)+". Reload to try again.")
}

func orDash(s string) string {
	if s == "" {
		return "–"
	}
	return s
}
