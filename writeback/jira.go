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

	"github.com/recoverpasscode/recoverpasscode/wire"
)

// issueKey is a Jira issue key: a project key and a number.
var issueKey = regexp.MustCompile(`^[A-Z][A-Z0-9_]+-[0-9]+$`)

// jiraTarget adds a comment to the issue whose key is the result's ticket.
type jiraTarget struct {
	spec   *jiraSpec
	client *http.Client
}

var _ target = (*jiraTarget)(nil)

func (t *jiraTarget) deliver(ctx context.Context, d delivery) attempt {
	key := d.result.Ticket
	if key == "" {
		return attempt{final: OutcomeNoTicket, err: errors.New("the result names no ticket: there is no issue to comment on")}
	}
	if len(key) > 255 || !issueKey.MatchString(key) {
		return attempt{final: OutcomeInvalidTicket, err: fmt.Errorf("ticket %q is not a Jira issue key such as ITSM-42", wire.Truncate(key, 64))}
	}
	body, err := json.Marshal(commentBody(d.lines(), t.spec.public))
	if err != nil {
		return attempt{err: err}
	}
	u := t.spec.site + "/rest/api/3/issue/" + url.PathEscape(key) + "/comment"
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return attempt{err: err}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	if t.spec.bearer != "" {
		req.Header.Set("Authorization", "Bearer "+t.spec.bearer)
	} else {
		req.SetBasicAuth(t.spec.email, t.spec.token)
	}
	_, a := send(t.client, req, t.spec.redact)
	if a.status == http.StatusNotFound {
		// Jira answers 404 alike for an issue that does not exist and one
		// the account may not see; neither is a guess to retry.
		a.final = OutcomeNotFound
		a.err = fmt.Errorf("no Jira issue %s, or the account may not see it (404)", key)
		return a
	}
	if !a.ok() {
		a.err = fmt.Errorf("commenting on %s: %w", key, a.err)
	}
	return a
}

// adf is a node of the Atlassian Document Format.
type adf struct {
	Type    string `json:"type"`
	Version int    `json:"version,omitempty"`
	Text    string `json:"text,omitempty"`
	Content []adf  `json:"content,omitempty"`
}

// comment is the body of POST /rest/api/3/issue/{key}/comment.
type comment struct {
	Body adf `json:"body"`
	// Properties carries sd.public.comment, which makes the comment an
	// internal note in Jira Service Management.
	Properties []commentProperty `json:"properties,omitempty"`
}

// commentProperty is an entity property of a comment.
type commentProperty struct {
	Key   string `json:"key"`
	Value any    `json:"value"`
}

// commentBody is the comment a result or confirmation becomes: a document
// of one paragraph per line of its Note (or ConfirmationNote), internal
// unless public.
func commentBody(lines []string, public bool) comment {
	doc := adf{Type: "doc", Version: 1}
	for _, line := range lines {
		doc.Content = append(doc.Content, adf{Type: "paragraph", Content: []adf{{Type: "text", Text: line}}})
	}
	c := comment{Body: doc}
	if !public {
		c.Properties = []commentProperty{{Key: "sd.public.comment", Value: map[string]bool{"internal": true}}}
	}
	return c
}
