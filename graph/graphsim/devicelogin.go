package graphsim

import (
	"crypto/subtle"
	"html/template"
	"net/http"
	"strings"
)

// deviceLoginPage is the verification page a person opens in --dev mode to
// approve a device code, standing in for https://microsoft.com/devicelogin.
var deviceLoginPage = template.Must(template.New("devicelogin").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>graphsim sign-in</title>
<style>body{font-family:sans-serif;max-width:28rem;margin:3rem auto}label{display:block;margin:.8rem 0}input{width:100%;padding:.4rem}</style>
</head><body>
<h1>graphsim sign-in</h1>
{{if .Done}}<p>Signed in as <strong>{{.UPN}}</strong>. You can close this window and return to the application.</p>
{{else}}{{if .Error}}<p role="alert" style="color:#a00">{{.Error}}</p>{{end}}
<p>Enter the code shown by the application and the account of a user registered with the simulator.</p>
<form method="post" action="devicelogin">
<label>Code <input name="user_code" value="{{.Code}}" autocomplete="off" required></label>
<label>User principal name <input name="username" value="{{.UPN}}" autocomplete="username" required></label>
<label>Password <input name="password" type="password" autocomplete="current-password"></label>
<button type="submit">Sign in</button>
</form>{{end}}
</body></html>
`))

type deviceLoginView struct {
	Code, UPN, Error string
	Done             bool
}

// serveDeviceLogin serves the verification page: GET shows the form, POST
// checks the user's password and approves the device code.
func (s *Server) serveDeviceLogin(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		s.renderDeviceLogin(w, http.StatusOK, deviceLoginView{Code: r.URL.Query().Get("code")})
	case http.MethodPost:
		r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
		if err := r.ParseForm(); err != nil {
			s.renderDeviceLogin(w, http.StatusBadRequest, deviceLoginView{Error: "The form could not be read."})
			return
		}
		v := deviceLoginView{Code: strings.TrimSpace(r.PostForm.Get("user_code")), UPN: strings.TrimSpace(r.PostForm.Get("username"))}
		if msg := s.approveWithPassword(v.Code, v.UPN, r.PostForm.Get("password")); msg != "" {
			v.Error = msg
			s.renderDeviceLogin(w, http.StatusBadRequest, v)
			return
		}
		v.Done = true
		s.renderDeviceLogin(w, http.StatusOK, v)
	default:
		w.Header().Set("Allow", "GET, HEAD, POST")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	}
}

// approveWithPassword approves the pending device code if the password is
// the user's. It returns a message for the person, "" on success; the
// message does not say whether the user or the password was wrong.
func (s *Server) approveWithPassword(userCode, upn, password string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.pendingCodeLocked(userCode)
	if g == nil {
		return "That code is not valid or has expired. Check the code and try again."
	}
	u := s.dir.users[strings.ToLower(upn)]
	if u == nil || subtle.ConstantTimeCompare([]byte(password), []byte(u.password)) != 1 {
		return "The user name or password is incorrect."
	}
	g.approved = u
	s.broadcastLocked()
	s.cfg.Logf("graphsim: device code approved tenant=%s app=%s", g.tenantID, g.appID)
	return ""
}

func (s *Server) renderDeviceLogin(w http.ResponseWriter, status int, v deviceLoginView) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = deviceLoginPage.Execute(w, v)
}
