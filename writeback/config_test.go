package writeback

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

func TestValidateNamesWhatToFix(t *testing.T) {
	secret := mustSecretText(t)
	for _, tc := range []struct {
		name   string
		source Source
		want   []string
	}{
		{"http to a remote host", Source{Name: "ticketing", Webhooks: []Webhook{{URL: "http://hooks.example.com/x", Secret: secret}}},
			[]string{"source ticketing: webhooks[0]: url", "http:// only to a loopback address"}},
		{"a password in the URL", Source{Name: "ticketing", Webhooks: []Webhook{{URL: "https://u:p4ss@hooks.example.com/x", Secret: secret}}},
			[]string{"must not hold a user or password"}},
		{"no secret", Source{Name: "ticketing", Webhooks: []Webhook{{URL: "https://hooks.example.com/x"}}},
			[]string{"webhooks[0]: secret or secretFile is required"}},
		{"both secret and file", Source{Name: "ticketing", Webhooks: []Webhook{{URL: "https://hooks.example.com/x", Secret: secret, SecretFile: "/x"}}},
			[]string{"set secret or secretFile, not both"}},
		{"a secret without whsec_", Source{Name: "ticketing", Webhooks: []Webhook{{URL: "https://hooks.example.com/x", Secret: "hunter2hunter2"}}},
			[]string{"secret: not a whsec_<base64> secret"}},
		{"a missing secret file", Source{Name: "ticketing", Webhooks: []Webhook{{URL: "https://hooks.example.com/x", SecretFile: "/nonexistent/whsec"}}},
			[]string{"secretFile /nonexistent/whsec: no such file or directory"}},
		{"the same URL twice", Source{Name: "ticketing", Webhooks: []Webhook{{URL: "https://h.example.com/x", Secret: secret}, {URL: "https://h.example.com/x", Secret: secret}}},
			[]string{"webhooks[1]: endpoint name", "give one of them another name"}},
		{"a bad endpoint name", Source{Name: "ticketing", Webhooks: []Webhook{{Name: "My_Hook", URL: "https://h.example.com/x", Secret: secret}}},
			[]string{`name "My_Hook": want 1 to 32 lower-case letters`}},
		{"servicenow without auth", Source{Name: "ticketing", ServiceNow: &ServiceNow{Instance: "https://example.service-now.com"}},
			[]string{"servicenow: no authentication"}},
		{"servicenow with both auths", Source{Name: "ticketing", ServiceNow: &ServiceNow{Instance: "https://example.service-now.com", User: "u", Password: "p", ClientID: "c", ClientSecret: "s"}},
			[]string{"choose one authentication"}},
		{"servicenow table", Source{Name: "ticketing", ServiceNow: &ServiceNow{Instance: "https://example.service-now.com", Table: "incident/../sys_user", User: "u", Password: "p"}},
			[]string{`table "incident/../sys_user"`}},
		{"servicenow with a path", Source{Name: "ticketing", ServiceNow: &ServiceNow{Instance: "https://example.service-now.com/api", User: "u", Password: "p"}},
			[]string{"without a path"}},
		{"jira email without token", Source{Name: "ticketing", Jira: &Jira{Site: "https://example.atlassian.net", Email: "a@example.com"}},
			[]string{"jira: apiToken or apiTokenFile is required"}},
		{"jira over http", Source{Name: "ticketing", Jira: &Jira{Site: "http://example.atlassian.net", Bearer: "t0ken-value"}},
			[]string{"jira: site", "use https://"}},
		{"a bad source name", Source{Name: "ticket.ing"}, []string{`source "ticket.ing"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Config{Sources: []Source{tc.source}}.Validate()
			if err == nil {
				t.Fatal("Validate accepted it")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			for _, secretish := range []string{secret, "p4ss", "hunter2"} {
				if strings.Contains(err.Error(), secretish) {
					t.Errorf("error quotes a secret: %q", err)
				}
			}
		})
	}
}

func TestConfigFromYAML(t *testing.T) {
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "whsec")
	if err := os.WriteFile(secretFile, []byte(mustSecretText(t)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	passwordFile := filepath.Join(dir, "snow")
	if err := os.WriteFile(passwordFile, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	doc := `
webhooks:
  - url: https://hooks.example.com/recoverpasscode?code=abc123
    secretFile: ` + secretFile + `
    previousSecret: ` + mustSecretText(t) + `
  - name: local
    url: http://127.0.0.1:9999/webhook
    secret: ` + mustSecretText(t) + `
servicenow: {instance: "https://example.service-now.com", user: svc, passwordFile: ` + passwordFile + `}
jira: {site: "https://example.atlassian.net/", email: svc@example.com, apiToken: tok3n}
`
	var s Source
	dec := yaml.NewDecoder(strings.NewReader(doc))
	dec.KnownFields(true)
	if err := dec.Decode(&s); err != nil {
		t.Fatal(err)
	}
	s.Name = "ticketing"
	specs, err := Config{Sources: []Source{s}}.endpoints()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range specs {
		got = append(got, e.kind+":"+e.name)
	}
	if want := "webhook:" + s.Webhooks[0].endpointName() + " webhook:local servicenow:servicenow jira:jira"; strings.Join(got, " ") != want {
		t.Fatalf("endpoints %v, want %s", got, want)
	}
	if n := len(specs[0].webhook.secrets); n != 2 {
		t.Errorf("%d secrets for the rotated webhook, want 2", n)
	}
	if specs[2].servicenow.password != "s3cret" || specs[2].servicenow.table != "incident" {
		t.Errorf("servicenow: password from the file and table incident by default: %+v", specs[2].servicenow.table)
	}
	if specs[3].jira.site != "https://example.atlassian.net" {
		t.Errorf("jira site %q", specs[3].jira.site)
	}
	if d := redactURL(specs[0].webhook.url); strings.Contains(d, "abc123") {
		t.Errorf("a webhook's query shows in %q", d)
	}
}

func mustSecretText(t *testing.T) string {
	t.Helper()
	s, err := NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	return s
}
