package writeback

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/recoverpasscode/recoverpasscode/wire"
)

// recordNumber is what a ticket must look like to name a ServiceNow record:
// letters, digits, '-' and '_' only, so that no encoded-query operator
// (^, =, LIKE with a space, ^OR, ^NQ, …) can widen the query.
var recordNumber = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,39}$`)

// sysID is a ServiceNow record's sys_id, which becomes a path segment.
var sysID = regexp.MustCompile(`^[0-9a-f]{32}$`)

// codeTag is ServiceNow's journal markup for raw HTML; a note never
// carries it, so no field of a result can inject HTML into the ticket.
var codeTag = regexp.MustCompile(`(?i)\[/?code\]`)

// servicenowTarget adds a work note to the record whose number is the
// result's ticket, through the Table API.
type servicenowTarget struct {
	spec   *servicenowSpec
	client *http.Client
	// tokens, with OAuth, caches the access token; reset drops it after
	// a 401.
	mu     sync.Mutex
	tokens oauth2.TokenSource
	// tokenCtx carries the client the token requests go through.
	tokenCtx context.Context
}

var _ target = (*servicenowTarget)(nil)

func newServiceNowTarget(spec *servicenowSpec, client *http.Client) *servicenowTarget {
	t := &servicenowTarget{spec: spec, client: client}
	if spec.clientID != "" {
		t.tokenCtx = context.WithValue(context.Background(), oauth2.HTTPClient, client)
		t.resetTokens()
	}
	return t
}

func (t *servicenowTarget) resetTokens() {
	cc := clientcredentials.Config{
		ClientID:     t.spec.clientID,
		ClientSecret: t.spec.secret,
		TokenURL:     t.spec.tokenURL,
		AuthStyle:    oauth2.AuthStyleInParams,
	}
	t.mu.Lock()
	t.tokens = cc.TokenSource(t.tokenCtx)
	t.mu.Unlock()
}

func (t *servicenowTarget) deliver(ctx context.Context, d delivery) attempt {
	ticket := d.result.Ticket
	if ticket == "" {
		return attempt{final: OutcomeNoTicket, err: errors.New("the result names no ticket: there is no record to write the work note to")}
	}
	if !recordNumber.MatchString(ticket) {
		return attempt{final: OutcomeInvalidTicket, err: fmt.Errorf("ticket %q is not a record number (letters, digits, '-' and '_', such as INC0012345)", wire.Truncate(ticket, 64))}
	}
	id, a := t.find(ctx, ticket)
	if id == "" {
		return a
	}
	return t.addNote(ctx, id, d)
}

// find returns the sys_id of the one record numbered ticket.
func (t *servicenowTarget) find(ctx context.Context, ticket string) (string, attempt) {
	q := url.Values{
		"sysparm_query":  {"number=" + ticket},
		"sysparm_limit":  {"2"},
		"sysparm_fields": {"sys_id,number"},
	}
	u := t.spec.instance + "/api/now/table/" + url.PathEscape(t.spec.table) + "?" + q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return "", attempt{err: err}
	}
	body, a := t.send(req)
	if !a.ok() {
		a.err = fmt.Errorf("finding %s %s: %w", t.spec.table, ticket, a.err)
		return "", a
	}
	var page struct {
		Result []struct {
			SysID  string `json:"sys_id"`
			Number string `json:"number"`
		} `json:"result"`
	}
	if err := json.Unmarshal(body, &page); err != nil {
		return "", attempt{status: a.status, excerpt: excerpt(body, t.spec.redact), err: fmt.Errorf("finding %s %s: the Table API's answer is not its JSON: %v", t.spec.table, ticket, err)}
	}
	var ids []string
	for _, r := range page.Result {
		if strings.EqualFold(r.Number, ticket) {
			ids = append(ids, r.SysID)
		}
	}
	switch {
	case len(ids) == 0:
		return "", attempt{status: a.status, final: OutcomeNotFound, err: fmt.Errorf("no %s record is numbered %s", t.spec.table, ticket)}
	case len(ids) > 1:
		return "", attempt{status: a.status, final: OutcomeAmbiguous, err: fmt.Errorf("more than one %s record is numbered %s: the work note was written to none", t.spec.table, ticket)}
	case !sysID.MatchString(ids[0]):
		return "", attempt{status: a.status, err: fmt.Errorf("finding %s %s: the record's sys_id %q is not 32 hex digits", t.spec.table, ticket, wire.Truncate(ids[0], 40))}
	}
	return ids[0], a
}

// addNote PATCHes the record's work_notes, which appends to its journal.
func (t *servicenowTarget) addNote(ctx context.Context, id string, d delivery) attempt {
	note := codeTag.ReplaceAllString(strings.Join(d.lines(), "\n"), "")
	body, err := json.Marshal(map[string]string{"work_notes": note})
	if err != nil {
		return attempt{err: err}
	}
	u := t.spec.instance + "/api/now/table/" + url.PathEscape(t.spec.table) + "/" + id
	req, err := http.NewRequestWithContext(ctx, http.MethodPatch, u, bytes.NewReader(body))
	if err != nil {
		return attempt{err: err}
	}
	req.Header.Set("Content-Type", "application/json")
	_, a := t.send(req)
	if !a.ok() {
		a.err = fmt.Errorf("adding the work note to %s %s: %w", t.spec.table, d.result.Ticket, a.err)
	}
	return a
}

// send authenticates req and sends it.
func (t *servicenowTarget) send(req *http.Request) ([]byte, attempt) {
	req.Header.Set("Accept", "application/json")
	if t.tokens == nil {
		req.SetBasicAuth(t.spec.user, t.spec.password)
	} else {
		t.mu.Lock()
		ts := t.tokens
		t.mu.Unlock()
		tok, err := ts.Token()
		if err != nil {
			return nil, tokenAttempt(err, t.spec.redact)
		}
		tok.SetAuthHeader(req)
	}
	body, a := send(t.client, req, t.spec.redact)
	if a.status == http.StatusUnauthorized && t.tokens != nil {
		t.resetTokens() // revoked or expired early: the next attempt asks anew
	}
	return body, a
}

// tokenAttempt sums up a failed OAuth token request: the token endpoint's
// status and error code, never the credentials.
func tokenAttempt(err error, redact []string) attempt {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) && re.Response != nil {
		return attempt{
			status:  re.Response.StatusCode,
			excerpt: excerpt(re.Body, redact),
			err:     fmt.Errorf("OAuth token request answered %d %s", re.Response.StatusCode, orDash(re.ErrorCode)),
		}
	}
	return transportAttempt(context.Background(), fmt.Errorf("OAuth token request: %w", err), redact)
}
