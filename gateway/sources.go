package gateway

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/recoverpasscode/recoverpasscode/wire"
	"github.com/recoverpasscode/recoverpasscode/writeback"
)

// Source is one submitting system the gateway serves, and how its callers
// prove they are it. Its name is the <source> token of the subjects its
// jobs and results use, and is never taken from a request body.
type Source struct {
	// Name is one subject token: letters, digits, '-' or '_'.
	Name string
	// APIKeys are the SHA-256 hashes of the API keys that name this source,
	// each "sha256:<64 hex digits>" (HashAPIKey; `gateway hash-key`).
	// Several, so that a key can be replaced without downtime.
	APIKeys []string
	// EntraApps are the application (client) IDs whose Entra ID access
	// tokens name this source.
	EntraApps []string
	// Webhooks, ServiceNow and Jira configure the write-back of the
	// source's results (package writeback): the gateway process delivers
	// them (WriteBack), and the checks of writeback.Config.Validate apply.
	Webhooks   []writeback.Webhook
	ServiceNow *writeback.ServiceNow
	Jira       *writeback.Jira
}

// WriteBack is the source's write-back configuration, for a
// writeback.Config.
func (s Source) WriteBack() writeback.Source {
	return writeback.Source{Name: s.Name, Webhooks: s.Webhooks, ServiceNow: s.ServiceNow, Jira: s.Jira}
}

// WriteBacks lists the write-back of every source that has an endpoint,
// the Sources of a writeback.Config.
func WriteBacks(sources []Source) []writeback.Source {
	var out []writeback.Source
	for _, s := range sources {
		if len(s.Webhooks) > 0 || s.ServiceNow != nil || s.Jira != nil {
			out = append(out, s.WriteBack())
		}
	}
	return out
}

// configFile is the YAML of GATEWAY_CONFIG.
type configFile struct {
	Sources map[string]sourceYAML `yaml:"sources"`
}

type sourceYAML struct {
	APIKeys    []string              `yaml:"apiKeys"`
	EntraApps  []string              `yaml:"entraApps"`
	Webhooks   []writeback.Webhook   `yaml:"webhooks"`
	ServiceNow *writeback.ServiceNow `yaml:"servicenow"`
	Jira       *writeback.Jira       `yaml:"jira"`
}

// yamlKnown names the keys each level of the file may hold, for errors.
var yamlKnown = map[string]string{
	"configFile": "(the file has: sources)",
	"sourceYAML": "(a source has: apiKeys, entraApps, webhooks, servicenow, jira)",
	"Webhook":    "(a webhook has: url, secret, secretFile), and may have name, previousSecret and previousSecretFile",
	"ServiceNow": "(servicenow has: instance, table, user, password, passwordFile, clientId, clientSecret, clientSecretFile, tokenUrl, name)",
	"Jira":       "(jira has: site, email, apiToken, apiTokenFile, bearer, bearerFile, public, name)",
}

var (
	yamlUnknownField = regexp.MustCompile(`field (\S+) not found in type (?:gateway|writeback)\.(\w+)`)
	// yamlQuoted is a value yaml quotes in an error, which may be a key
	// pasted in the wrong place: it is not repeated.
	yamlQuoted = regexp.MustCompile("`[^`]*`")
)

// ParseConfigFile reads the sources of a GATEWAY_CONFIG file:
//
//	sources:
//	  ticketing:
//	    apiKeys: ["sha256:<hex of the key's SHA-256>"]
//	    entraApps: ["<application (client) id>"]
//	    webhooks: [{url: "https://…", secret: "whsec_…"}]
//	    servicenow: {instance: "https://example.service-now.com", …}
//	    jira: {site: "https://example.atlassian.net", …}
//
// An unknown key is an error naming its line; so is every invalid value,
// the write-back's included (writeback.Config.Validate, which also reads
// the secret files it names).
func ParseConfigFile(data []byte) ([]Source, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var f configFile
	if err := dec.Decode(&f); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("the file is empty: want a sources: mapping")
		}
		return nil, errors.New(describeYAMLError(err))
	}
	var out []Source
	for name, s := range f.Sources {
		out = append(out, Source{
			Name: name, APIKeys: s.APIKeys, EntraApps: s.EntraApps,
			Webhooks: s.Webhooks, ServiceNow: s.ServiceNow, Jira: s.Jira,
		})
	}
	slices.SortFunc(out, func(a, b Source) int { return strings.Compare(a.Name, b.Name) })
	if err := checkSources(out); err != nil {
		return nil, err
	}
	return out, nil
}

func describeYAMLError(err error) string {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	msg = strings.TrimPrefix(msg, "unmarshal errors:\n")
	msg = yamlQuoted.ReplaceAllString(msg, "a value")
	msg = yamlUnknownField.ReplaceAllStringFunc(msg, func(m string) string {
		sub := yamlUnknownField.FindStringSubmatch(m)
		return fmt.Sprintf("unknown key %q %s", sub[1], yamlKnown[sub[2]])
	})
	return strings.NewReplacer("gateway.sourceYAML", "a source", "gateway.configFile", "the file",
		"writeback.Webhook", "a webhook", "writeback.ServiceNow", "servicenow", "writeback.Jira", "jira").Replace(msg)
}

// ParseSourcesEnv reads the compact form of GATEWAY_SOURCES, for small
// setups without a file: comma-separated <source>=<credential> pairs, where
// a credential is an API key's hash "sha256:<hex>" or an Entra application
// "app:<client id>". A source may appear several times:
//
//	ticketing=sha256:9f86…,ticketing=sha256:2c26…,automation=app:6f1c…
func ParseSourcesEnv(s string) ([]Source, error) {
	byName := map[string]*Source{}
	var order []string
	// Values are never quoted in errors: a key pasted by mistake would
	// end up in a log.
	for i, pair := range strings.Split(s, ",") {
		pair = strings.TrimSpace(pair)
		if pair == "" {
			continue
		}
		name, cred, ok := strings.Cut(pair, "=")
		if !ok {
			return nil, fmt.Errorf("GATEWAY_SOURCES: entry %d has no '=': want <source>=sha256:<hex> or <source>=app:<client id>", i+1)
		}
		name, cred = strings.TrimSpace(name), strings.TrimSpace(cred)
		src := byName[name]
		if src == nil {
			src = &Source{Name: name}
			byName[name] = src
			order = append(order, name)
		}
		switch {
		case strings.HasPrefix(cred, "sha256:"):
			src.APIKeys = append(src.APIKeys, cred)
		case strings.HasPrefix(cred, "app:"):
			src.EntraApps = append(src.EntraApps, strings.TrimPrefix(cred, "app:"))
		default:
			return nil, fmt.Errorf("GATEWAY_SOURCES: entry %d (source %q): the value is neither sha256:<hex> (an API key's hash) nor app:<client id> (an Entra application)", i+1, wire.Truncate(name, 64))
		}
	}
	out := make([]Source, 0, len(order))
	for _, name := range order {
		out = append(out, *byName[name])
	}
	if err := checkSources(out); err != nil {
		return nil, err
	}
	return out, nil
}

// MergeSources joins lists of sources (the file's and GATEWAY_SOURCES'):
// a source named in several gets the credentials of all.
func MergeSources(lists ...[]Source) ([]Source, error) {
	var out []Source
	index := map[string]int{}
	for _, list := range lists {
		for _, s := range list {
			i, ok := index[s.Name]
			if !ok {
				index[s.Name] = len(out)
				out = append(out, s)
				continue
			}
			m := &out[i]
			m.APIKeys = append(slices.Clone(m.APIKeys), s.APIKeys...)
			m.EntraApps = append(slices.Clone(m.EntraApps), s.EntraApps...)
			m.Webhooks = append(slices.Clone(m.Webhooks), s.Webhooks...)
			if s.ServiceNow != nil {
				m.ServiceNow = s.ServiceNow
			}
			if s.Jira != nil {
				m.Jira = s.Jira
			}
		}
	}
	if err := checkSources(out); err != nil {
		return nil, err
	}
	return out, nil
}

// checkSources reports every invalid source, and any credential that would
// name two sources.
func checkSources(sources []Source) error {
	if len(sources) == 0 {
		return errors.New("no source is configured: name at least one in GATEWAY_CONFIG or GATEWAY_SOURCES (gateway hash-key makes an API key)")
	}
	var errs []error
	keys := map[string]string{}
	apps := map[string]string{}
	names := map[string]bool{}
	for _, s := range sources {
		if !wire.ValidToken(s.Name) {
			errs = append(errs, fmt.Errorf("source %q: a source name is one subject token: 1 to 64 letters, digits, '-' or '_'", wire.Truncate(s.Name, 64)))
			continue
		}
		if names[s.Name] {
			errs = append(errs, fmt.Errorf("source %s is named twice", s.Name))
		}
		names[s.Name] = true
		if len(s.APIKeys) == 0 && len(s.EntraApps) == 0 {
			errs = append(errs, fmt.Errorf("source %s has no apiKeys and no entraApps: nobody could call as it", s.Name))
		}
		for _, k := range s.APIKeys {
			if _, err := parseKeyHash(k); err != nil {
				errs = append(errs, fmt.Errorf("source %s: apiKeys: %w", s.Name, err))
				continue
			}
			k = strings.ToLower(k)
			if other, dup := keys[k]; dup && other != s.Name {
				errs = append(errs, fmt.Errorf("source %s: an API key hash is also one of source %s's: a key names one source", s.Name, other))
			}
			keys[k] = s.Name
		}
		for _, a := range s.EntraApps {
			if !wire.IsGUID(a) {
				errs = append(errs, fmt.Errorf("source %s: entraApps: %q is not an application (client) ID, a GUID", s.Name, wire.Truncate(a, 64)))
				continue
			}
			a = strings.ToLower(a)
			if other, dup := apps[a]; dup && other != s.Name {
				errs = append(errs, fmt.Errorf("source %s: application %s also names source %s: an application names one source", s.Name, a, other))
			}
			apps[a] = s.Name
		}
		// Each error of writeback's names the source and the field.
		if err := (writeback.Config{Sources: []writeback.Source{s.WriteBack()}}).Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// parseKeyHash reads "sha256:<64 hex digits>".
func parseKeyHash(s string) ([32]byte, error) {
	var sum [32]byte
	hexPart, ok := strings.CutPrefix(strings.ToLower(s), "sha256:")
	if !ok || len(hexPart) != 64 {
		return sum, errors.New("a value is not sha256:<64 hex digits>, the hash `gateway hash-key` prints (never the key itself)")
	}
	if _, err := hex.Decode(sum[:], []byte(hexPart)); err != nil {
		return sum, errors.New("a value is not sha256:<64 hex digits>: it holds a character that is not a hex digit")
	}
	return sum, nil
}

func usesEntra(sources []Source) bool {
	for _, s := range sources {
		if len(s.EntraApps) > 0 {
			return true
		}
	}
	return false
}
