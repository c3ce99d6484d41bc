package gateway

import (
	"bytes"
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// openAPIDoc is the part of openapi.json the tests walk.
type openAPIDoc struct {
	Paths map[string]map[string]openAPIOperation `json:"paths"`
}

type openAPIOperation struct {
	Responses  map[string]any   `json:"responses"`
	Parameters []map[string]any `json:"parameters"`
}

func loadOpenAPI(t testing.TB) openAPIDoc {
	t.Helper()
	var doc openAPIDoc
	if err := json.Unmarshal(openAPIDocument, &doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	return doc
}

// TestOpenAPIDocumentIsValid validates openapi.json against the OpenAPI
// 3.1 schema (testdata) and every schema in it against JSON Schema 2020-12,
// the dialect of 3.1.
func TestOpenAPIDocumentIsValid(t *testing.T) {
	c := jsonschema.NewCompiler()
	meta, err := os.ReadFile("testdata/oas-3.1-schema-2022-10-07.json")
	if err != nil {
		t.Fatal(err)
	}
	metaDoc, err := jsonschema.UnmarshalJSON(bytes.NewReader(meta))
	if err != nil {
		t.Fatal(err)
	}
	const metaURL = "https://spec.openapis.org/oas/3.1/schema/2022-10-07"
	if err := c.AddResource(metaURL, metaDoc); err != nil {
		t.Fatal(err)
	}
	oas, err := c.Compile(metaURL)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(openAPIDocument))
	if err != nil {
		t.Fatal(err)
	}
	if err := oas.Validate(doc); err != nil {
		t.Fatalf("openapi.json is not a valid OpenAPI 3.1 document: %v", err)
	}
	if !strings.HasPrefix(doc.(map[string]any)["openapi"].(string), "3.1.") {
		t.Fatal("openapi.json is not OpenAPI 3.1")
	}
	for name := range doc.(map[string]any)["components"].(map[string]any)["schemas"].(map[string]any) {
		if _, err := componentSchema(t, name); err != nil {
			t.Errorf("schema %s: %v", name, err)
		}
	}
}

// TestEveryRouteIsDocumented walks the route table: each route is in the
// document with its method, its path parameters and its answers, and the
// document names no operation the gateway does not serve.
func TestEveryRouteIsDocumented(t *testing.T) {
	doc := loadOpenAPI(t)
	served := map[string][]string{}
	param := regexp.MustCompile(`\{(\w+)\}`)
	for _, rt := range routes {
		method := strings.ToLower(rt.method)
		served[rt.path] = append(served[rt.path], method)
		op, ok := doc.Paths[rt.path][method]
		if !ok {
			t.Errorf("%s %s is served but not in openapi.json", rt.method, rt.path)
			continue
		}
		if len(op.Responses) == 0 {
			t.Errorf("%s %s documents no response", rt.method, rt.path)
		}
		if _, ok := op.Responses["405"]; !ok {
			t.Errorf("%s %s does not document 405, which every route answers to another method", rt.method, rt.path)
		}
		if rt.authenticated {
			for _, code := range []string{"401", "403", "503"} {
				if _, ok := op.Responses[code]; !ok {
					t.Errorf("%s %s is authenticated but does not document %s", rt.method, rt.path, code)
				}
			}
		}
		for _, m := range param.FindAllStringSubmatch(rt.path, -1) {
			if !slices.ContainsFunc(op.Parameters, func(p map[string]any) bool { return p["name"] == m[1] && p["in"] == "path" }) {
				t.Errorf("%s %s does not document its path parameter %s", rt.method, rt.path, m[1])
			}
		}
	}
	for path, ops := range doc.Paths {
		for method := range ops {
			if !slices.Contains(served[path], method) {
				t.Errorf("openapi.json documents %s %s, which the gateway does not serve", method, path)
			}
		}
	}
}

func TestOpenAPIDescribesTheKeyPolicy(t *testing.T) {
	var doc struct {
		Info struct{ Description string } `json:"info"`
	}
	if err := json.Unmarshal(openAPIDocument, &doc); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Idempotency-Key", "1 hour", "24 hours", "RECOVER_KEYS_TTL", "422", "Prefer: wait=N", "100,000"} {
		if !strings.Contains(doc.Info.Description, want) {
			t.Errorf("the description does not say %q", want)
		}
	}
	for typ := range problemTitles {
		if !strings.Contains(doc.Info.Description, string(typ)) {
			t.Errorf("the description does not list the problem type %s", typ)
		}
	}
}

var (
	schemasOnce sync.Once
	schemasC    *jsonschema.Compiler
	schemasErr  error
)

// componentSchema compiles #/components/schemas/<name> of openapi.json,
// so that tests can check real answers against the document.
func componentSchema(t testing.TB, name string) (*jsonschema.Schema, error) {
	t.Helper()
	schemasOnce.Do(func() {
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(openAPIDocument))
		if err != nil {
			schemasErr = err
			return
		}
		schemasC = jsonschema.NewCompiler()
		schemasC.DefaultDraft(jsonschema.Draft2020)
		schemasC.AssertFormat()
		schemasErr = schemasC.AddResource("https://gateway.test/openapi.json", doc)
	})
	if schemasErr != nil {
		return nil, schemasErr
	}
	return schemasC.Compile("https://gateway.test/openapi.json#/components/schemas/" + name)
}

// conforms fails the test when body does not match the named schema of
// openapi.json.
func conforms(t testing.TB, name string, body []byte) {
	t.Helper()
	sch, err := componentSchema(t, name)
	if err != nil {
		t.Fatalf("schema %s: %v", name, err)
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("answer is not JSON: %v: %s", err, body)
	}
	if err := sch.Validate(v); err != nil {
		t.Errorf("answer does not match openapi.json's %s: %v\n%s", name, err, body)
	}
}
