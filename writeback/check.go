package writeback

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"regexp"
	"strings"

	"github.com/recoverpasscode/recoverpasscode/wire"
)

// webhookSpec is a validated webhook with its secrets read.
type webhookSpec struct {
	url     string
	secrets []Secret
	// redact holds what must never appear in a log or an error: the
	// secrets as configured and the URL's query.
	redact []string
}

func (w Webhook) spec() (*webhookSpec, error) {
	var errs []error
	u, err := checkURL("url", w.URL, true)
	if err != nil {
		errs = append(errs, err)
	}
	current, err := readSecret("secret", w.Secret, w.SecretFile, true)
	if err != nil {
		errs = append(errs, err)
	}
	previous, err := readSecret("previousSecret", w.PreviousSecret, w.PreviousSecretFile, false)
	if err != nil {
		errs = append(errs, err)
	}
	spec := &webhookSpec{}
	for _, s := range []struct{ field, value string }{{"secret", current}, {"previousSecret", previous}} {
		if s.value == "" {
			continue
		}
		sec, err := ParseSecret(s.value)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", s.field, err))
			continue
		}
		spec.secrets = append(spec.secrets, sec)
		spec.redact = append(spec.redact, s.value, strings.TrimPrefix(s.value, secretPrefix))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	spec.url = u.String()
	if u.RawQuery != "" {
		spec.redact = append(spec.redact, u.RawQuery)
	}
	return spec, nil
}

// servicenowSpec is a validated ServiceNow endpoint with its secrets read.
type servicenowSpec struct {
	instance, table  string
	user, password   string
	clientID, secret string
	tokenURL         string
	redact           []string
}

// tablePattern is a ServiceNow table name, which becomes a path segment.
var tablePattern = regexp.MustCompile(`^[a-z][a-z0-9_]{0,79}$`)

func (s ServiceNow) spec() (*servicenowSpec, error) {
	var errs []error
	u, err := checkURL("instance", s.Instance, false)
	if err != nil {
		errs = append(errs, err)
	}
	spec := &servicenowSpec{table: orDefault(s.Table, "incident"), user: s.User, clientID: s.ClientID}
	if !tablePattern.MatchString(spec.table) {
		errs = append(errs, fmt.Errorf("table %q: want a table name such as incident: lower-case letters, digits and '_'", wire.Truncate(spec.table, 80)))
	}
	basic := s.User != "" || s.Password != "" || s.PasswordFile != ""
	oauth := s.ClientID != "" || s.ClientSecret != "" || s.ClientSecretFile != "" || s.TokenURL != ""
	switch {
	case basic && oauth:
		errs = append(errs, errors.New("choose one authentication: user and password (basic), or clientId and clientSecret (OAuth client credentials)"))
	case basic:
		if s.User == "" {
			errs = append(errs, errors.New("user: required with a password"))
		}
		spec.password, err = readSecret("password", s.Password, s.PasswordFile, true)
		if err != nil {
			errs = append(errs, err)
		}
	case oauth:
		if s.ClientID == "" {
			errs = append(errs, errors.New("clientId: required with a clientSecret"))
		}
		spec.secret, err = readSecret("clientSecret", s.ClientSecret, s.ClientSecretFile, true)
		if err != nil {
			errs = append(errs, err)
		}
		if s.TokenURL != "" {
			t, err := checkURL("tokenUrl", s.TokenURL, false)
			if err != nil {
				errs = append(errs, err)
			} else {
				spec.tokenURL = t.String()
			}
		}
	default:
		errs = append(errs, errors.New("no authentication: set user and password (or passwordFile), or clientId and clientSecret (or clientSecretFile)"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if u.Path != "" && u.Path != "/" {
		return nil, fmt.Errorf("instance %q: want the instance's root URL, such as https://example.service-now.com, without a path", redactURL(s.Instance))
	}
	spec.instance = u.Scheme + "://" + u.Host
	if oauth && spec.tokenURL == "" {
		spec.tokenURL = spec.instance + "/oauth_token.do"
	}
	spec.redact = nonEmpty(spec.password, spec.secret)
	return spec, nil
}

// jiraSpec is a validated Jira endpoint with its secrets read.
type jiraSpec struct {
	site         string
	email, token string
	bearer       string
	public       bool
	redact       []string
}

func (j Jira) spec() (*jiraSpec, error) {
	var errs []error
	u, err := checkURL("site", j.Site, false)
	if err != nil {
		errs = append(errs, err)
	}
	spec := &jiraSpec{email: j.Email, public: j.Public}
	basic := j.Email != "" || j.APIToken != "" || j.APITokenFile != ""
	bearer := j.Bearer != "" || j.BearerFile != ""
	switch {
	case basic && bearer:
		errs = append(errs, errors.New("choose one authentication: email and apiToken, or bearer"))
	case basic:
		if j.Email == "" {
			errs = append(errs, errors.New("email: required with an apiToken (the Atlassian account the token belongs to)"))
		}
		spec.token, err = readSecret("apiToken", j.APIToken, j.APITokenFile, true)
		if err != nil {
			errs = append(errs, err)
		}
	case bearer:
		spec.bearer, err = readSecret("bearer", j.Bearer, j.BearerFile, true)
		if err != nil {
			errs = append(errs, err)
		}
	default:
		errs = append(errs, errors.New("no authentication: set email and apiToken (or apiTokenFile), or bearer (or bearerFile)"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	spec.site = strings.TrimSuffix(u.Scheme+"://"+u.Host+u.EscapedPath(), "/")
	spec.redact = nonEmpty(spec.token, spec.bearer)
	return spec, nil
}

// checkURL parses an endpoint URL from the configuration: https, or http
// to a loopback address; no user or password; a query only where allowed.
func checkURL(field, raw string, queryAllowed bool) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return nil, fmt.Errorf("%s %q: want an absolute https:// URL", field, redactURL(raw))
	}
	if u.User != nil {
		return nil, fmt.Errorf("%s %q: must not hold a user or password (they would be logged): use the authentication settings", field, redactURL(raw))
	}
	if u.Scheme == "http" && !loopback(u.Hostname()) {
		return nil, fmt.Errorf("%s %q: http:// only to a loopback address (127.0.0.1, ::1, localhost): use https://", field, redactURL(raw))
	}
	if u.Fragment != "" || (!queryAllowed && u.RawQuery != "") {
		return nil, fmt.Errorf("%s %q: want a URL without a query or fragment", field, redactURL(raw))
	}
	return u, nil
}

// loopback reports whether host is a loopback address or localhost.
func loopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// redactURL is raw without its user, password, query and fragment, for
// messages.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	u.User, u.RawQuery, u.ForceQuery, u.Fragment, u.RawFragment = nil, "", false, "", ""
	return wire.Truncate(u.String(), 80)
}

// readSecret returns value, or the content of file (surrounding white
// space trimmed). Errors never quote either.
func readSecret(field, value, file string, required bool) (string, error) {
	switch {
	case value != "" && file != "":
		return "", fmt.Errorf("set %s or %sFile, not both", field, field)
	case value != "":
		return strings.TrimSpace(value), nil
	case file != "":
		raw, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("%sFile %s: %w", field, file, errors.Unwrap(err))
		}
		v := strings.TrimSpace(string(raw))
		if v == "" {
			return "", fmt.Errorf("%sFile %s is empty", field, file)
		}
		return v, nil
	case required:
		return "", fmt.Errorf("%s or %sFile is required", field, field)
	default:
		return "", nil
	}
}

func nonEmpty(values ...string) []string {
	var out []string
	for _, v := range values {
		if v != "" {
			out = append(out, v)
		}
	}
	return out
}
