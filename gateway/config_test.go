package gateway

import (
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
)

const (
	hashA = "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
	hashB = "sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae"
	appA  = "6f1c7a2e-1111-4222-8333-444444444444"
	// testSecret is a webhook secret of 32 bytes (writeback wants 24 to 64).
	testSecret = "whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
)

func TestParseConfigFile(t *testing.T) {
	srcs, err := ParseConfigFile([]byte(`
sources:
  ticketing:
    apiKeys: ["` + hashA + `", "` + strings.ToUpper(hashB[:6]) + hashB[6:] + `"]
    webhooks:
      - url: https://hooks.example.com/recoverpasscode
        secret: ` + testSecret + `
    servicenow: {instance: "https://example.service-now.com", table: incident, user: svc, password: pw}
    jira: {site: "https://example.atlassian.net", bearer: tok}
  automation:
    entraApps: ["` + appA + `"]
`))
	if err != nil {
		t.Fatal(err)
	}
	if len(srcs) != 2 || srcs[0].Name != "automation" || srcs[1].Name != "ticketing" {
		t.Fatalf("sources %+v", srcs)
	}
	tk := srcs[1]
	if len(tk.APIKeys) != 2 || len(tk.Webhooks) != 1 || tk.Webhooks[0].Secret != testSecret || tk.ServiceNow.Table != "incident" || tk.Jira.Site == "" {
		t.Fatalf("ticketing %+v", tk)
	}
	if srcs[0].EntraApps[0] != appA {
		t.Fatalf("automation %+v", srcs[0])
	}
}

func TestConfigFileErrors(t *testing.T) {
	for _, tc := range []struct {
		name, yaml, want string
	}{
		{"unknown top-level key", "source:\n  a: {apiKeys: [\"" + hashA + "\"]}\n", `line 1: unknown key "source" (the file has: sources)`},
		{"unknown source key", "sources:\n  a:\n    apikeys: [\"" + hashA + "\"]\n", `line 3: unknown key "apikeys" (a source has: apiKeys, entraApps, webhooks, servicenow, jira)`},
		{"unknown webhook key", "sources:\n  a:\n    apiKeys: [\"" + hashA + "\"]\n    webhooks: [{url: \"https://x.example\", secrets: s}]\n", `unknown key "secrets" (a webhook has: url, secret, secretFile)`},
		{"a key instead of its hash", "sources:\n  a:\n    apiKeys: [\"rpk_THE-SECRET-KEY\"]\n", "not sha256:<64 hex digits>"},
		{"a scalar key", "sources:\n  a:\n    apiKeys: rpk_THE-SECRET-KEY\n", "line 3"},
		{"bad source name", "sources:\n  a.b:\n    apiKeys: [\"" + hashA + "\"]\n", "one subject token"},
		{"no credential", "sources:\n  a: {}\n", "no apiKeys and no entraApps"},
		{"bad app id", "sources:\n  a:\n    entraApps: [app1]\n", "not an application (client) ID"},
		{"one key, two sources", "sources:\n  a: {apiKeys: [\"" + hashA + "\"]}\n  b: {apiKeys: [\"" + hashA + "\"]}\n", "a key names one source"},
		{"webhook without https", "sources:\n  a:\n    apiKeys: [\"" + hashA + "\"]\n    webhooks: [{url: \"ftp://x\"}]\n", "https://"},
		{"webhook over http to another host", "sources:\n  a:\n    apiKeys: [\"" + hashA + "\"]\n    webhooks: [{url: \"http://hooks.example.com/x\", secret: " + testSecret + "}]\n", "source a: webhooks[0]: url"},
		{"webhook with a bad secret", "sources:\n  a:\n    apiKeys: [\"" + hashA + "\"]\n    webhooks: [{url: \"https://hooks.example.com/x\", secret: whsec_THE-SECRET-KEY}]\n", "source a: webhooks[0]: secret"},
		{"webhook secret file missing", "sources:\n  a:\n    apiKeys: [\"" + hashA + "\"]\n    webhooks: [{url: \"https://hooks.example.com/x\", secretFile: /nonexistent/hook}]\n", "source a: webhooks[0]"},
		{"servicenow without authentication", "sources:\n  a:\n    apiKeys: [\"" + hashA + "\"]\n    servicenow: {instance: \"https://example.service-now.com\"}\n", "source a: servicenow: no authentication"},
		{"unknown servicenow key", "sources:\n  a:\n    apiKeys: [\"" + hashA + "\"]\n    servicenow: {instance: \"https://example.service-now.com\", assignmentGroup: x}\n", `unknown key "assignmentGroup" (servicenow has: instance,`},
		{"unknown jira key", "sources:\n  a:\n    apiKeys: [\"" + hashA + "\"]\n    jira: {site: \"https://example.atlassian.net\", token: x}\n", `unknown key "token" (jira has: site,`},
		{"jira site not https", "sources:\n  a:\n    apiKeys: [\"" + hashA + "\"]\n    jira: {site: \"http://example.atlassian.net\", bearer: x}\n", "source a: jira: site"},
		{"empty", "", "empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfigFile([]byte(tc.yaml))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want it to say %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "THE-SECRET-KEY") {
				t.Fatalf("the error repeats a key: %v", err)
			}
		})
	}
}

func TestParseSourcesEnv(t *testing.T) {
	srcs, err := ParseSourcesEnv("ticketing=" + hashA + ", ticketing=" + hashB + ",automation=app:" + appA)
	if err != nil {
		t.Fatal(err)
	}
	if len(srcs) != 2 || len(srcs[0].APIKeys) != 2 || srcs[1].EntraApps[0] != appA {
		t.Fatalf("sources %+v", srcs)
	}
	for in, want := range map[string]string{
		"ticketing":                        "entry 1 has no '='",
		"ticketing=rpk_THE-SECRET":         "neither sha256:<hex>",
		"a.b=" + hashA:                     "one subject token",
		"ticketing=sha256:abc":             "not sha256:<64 hex digits>",
		"t=" + hashA + ",u=" + hashA:       "names one source",
		"t=app:" + appA + ",u=app:" + appA: "names one source",
	} {
		_, err := ParseSourcesEnv(in)
		if err == nil || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "THE-SECRET") {
			t.Errorf("ParseSourcesEnv(%q) = %v, want %q", in, err, want)
		}
	}
	merged, err := MergeSources([]Source{{Name: "ticketing", APIKeys: []string{hashA}}}, []Source{{Name: "ticketing", APIKeys: []string{hashB}}, {Name: "cli", APIKeys: []string{HashAPIKey("x")}}})
	if err != nil || len(merged) != 2 || len(merged[0].APIKeys) != 2 {
		t.Fatalf("merged %+v, %v", merged, err)
	}
}

func TestConfigValidate(t *testing.T) {
	nc := &nats.Conn{}
	ok := Config{NATS: nc, TenantID: "33333333-3333-4333-8333-333333333333", Sources: []Source{{Name: "t", APIKeys: []string{hashA}}}}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"no NATS", func(c *Config) { c.NATS = nil }, "NATS connection"},
		{"no tenant", func(c *Config) { c.TenantID = "" }, "AZURE_TENANT_ID"},
		{"bad tenants", func(c *Config) { c.Tenants = []string{"contoso"} }, "RECOVER_TENANTS"},
		{"no source", func(c *Config) { c.Sources = nil }, "no source"},
		{"bad prefix", func(c *Config) { c.Prefix = "a.b" }, "RECOVER_PREFIX"},
		{"entra without audience", func(c *Config) { c.Sources = []Source{{Name: "a", EntraApps: []string{appA}}} }, "GATEWAY_AUDIENCE"},
		{"entra over http", func(c *Config) {
			c.Sources, c.Audiences, c.AuthorityHost = []Source{{Name: "a", EntraApps: []string{appA}}}, []string{"x"}, "http://login.example"
		}, "AZURE_AUTHORITY_HOST"},
		{"bad role", func(c *Config) { c.Role = "Jobs Submit" }, "GATEWAY_ROLE"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := ok
			tc.edit(&c)
			if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate = %v, want it to say %s", err, tc.want)
			}
		})
	}
}
