package service

import (
	"reflect"
	"testing"
	"time"

	"github.com/recoverpasscode/recoverpasscode/ratelimit"
)

// TestZeroFieldsTakeTheDefaultConfig: Validate fills every zero field that
// has a default with DefaultConfig's value, so the defaults live in one
// place; HTTPAddr stays off and the fields a caller set stay as set.
func TestZeroFieldsTakeTheDefaultConfig(t *testing.T) {
	c := Config{Name: "w1", Concurrency: 3, Rate: ratelimit.Rate{N: 5, Per: time.Second}}
	c.Credential.TenantID = "33333333-3333-4333-8333-333333333333"
	c.Credential.ClientID = "55555555-5555-4555-8555-555555555555"
	c.Credential.ClientSecret = "s"
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	want := DefaultConfig()
	want.NATS = c.NATS
	want.Credential = c.Credential
	want.HTTPAddr = ""
	want.Name = "w1"
	want.Concurrency = 3
	want.Rate = ratelimit.Rate{N: 5, Per: time.Second}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("after Validate:\n got %+v\nwant %+v", c, want)
	}
	if c.Credential.GraphBaseURL != want.GraphURL {
		t.Errorf("Credential.GraphBaseURL %q, want GraphURL %q", c.Credential.GraphBaseURL, want.GraphURL)
	}
}

// TestDefaultConfigIsComplete: every field DefaultConfig documents a
// default for is set, so a flag reading it never shows a zero default.
func TestDefaultConfigIsComplete(t *testing.T) {
	d := DefaultConfig()
	v := reflect.ValueOf(d)
	optional := map[string]bool{"HTTPClient": true, "Clock": true, "Tenants": true, "InboxPerSource": true, "Pprof": true, "SourceLimits": true}
	for i := range v.NumField() {
		name := v.Type().Field(i).Name
		if !optional[name] && v.Field(i).IsZero() {
			t.Errorf("DefaultConfig().%s is not set", name)
		}
	}
	if d.NATS.URL == "" || d.Credential.AuthorityHost == "" {
		t.Errorf("DefaultConfig() lacks NATS.URL %q or Credential.AuthorityHost %q", d.NATS.URL, d.Credential.AuthorityHost)
	}
	if err := d.Validate(); err == nil {
		t.Error("DefaultConfig() validated without credentials")
	}
}
