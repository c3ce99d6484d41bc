package console

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/recoverpasscode/recoverpasscode/devserver/devservertest"
	"github.com/recoverpasscode/recoverpasscode/queue"
	"github.com/recoverpasscode/recoverpasscode/quota"
	"github.com/recoverpasscode/recoverpasscode/ratelimit"
	"github.com/recoverpasscode/recoverpasscode/wire"
)

// TestOperatorActionsAreAudited: pause, resume and release act on the
// limits bucket as the workers read it, and each is an audit event naming
// the operator.
func TestOperatorActionsAreAudited(t *testing.T) {
	const tenant, app, device = "33333333-3333-4333-8333-333333333333", "55555555-5555-4555-8555-555555555555", "2d6a3d0e-8f5c-4d7a-9b1e-000000000001"
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ns := devservertest.StartConfig(t, LeastPrivilege())
	nc, err := nats.Connect(ns.URL()) // the test's, with every right
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, _ := jetstream.New(nc)
	_, consoleJS := ConnectAsConsole(t, ns.URL())
	names := wire.Names{}
	if _, err := (queue.Setup{}).Ensure(ctx, js); err != nil {
		t.Fatal(err)
	}
	kv, err := js.CreateKeyValue(ctx, ratelimit.BucketConfig(names.LimitsBucket(), 1))
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{JetStream: consoleJS, TenantID: tenant, ClientID: "77777777-7777-4777-8777-777777777777", BaseURL: "http://127.0.0.1:8080"})
	if err != nil {
		t.Fatal(err)
	}
	op, sess := cookieOf(t, s, RoleOperate)
	act := func(path string, form url.Values) {
		t.Helper()
		form.Set("csrf", s.seal.csrfToken(sess))
		if w := post(s, op, path, form); w.Code != http.StatusSeeOther {
			t.Fatalf("%s: %d\n%s", path, w.Code, w.Body.String())
		}
	}

	act("/tenants/pause", url.Values{"app": {app}, "tenant": {tenant}, "for": {"1h"}})
	st, err := ratelimit.Status(ctx, kv, time.Now())
	if err != nil || len(st) != 1 || st[0].PausedUntil.Before(time.Now().Add(59*time.Minute)) || st[0].PausedBy != "operator "+sess.UPN {
		t.Fatalf("after pause: %+v %v", st, err)
	}
	act("/tenants/resume", url.Values{"app": {app}, "tenant": {tenant}})
	if st, _ = ratelimit.Status(ctx, kv, time.Now()); len(st) != 0 && !st[0].PausedUntil.IsZero() {
		t.Fatalf("after resume: %+v", st)
	}

	store := quota.New(js, kv, quota.Limits{"automation": ratelimit.Rate{N: 1, Per: time.Hour}})
	for _, id := range []string{"j1", "j2"} {
		if _, err := store.Admit(ctx, "automation", &wire.Job{ID: id, TenantID: tenant, ManagedDeviceID: device}); err != nil {
			t.Fatal(err)
		}
	}
	act("/held/release", url.Values{"source": {"automation"}, "id": {"j2"}})
	held, err := store.List(ctx, "automation")
	if err != nil || len(held) != 1 || !held[0].Released || held[0].ReleasedBy != sess.who() {
		t.Fatalf("after release: %+v %v", held, err)
	}

	kinds := map[string]wire.AuditEvent{}
	cons, err := js.OrderedConsumer(ctx, names.AuditStream(), jetstream.OrderedConsumerConfig{FilterSubjects: []string{names.AuditWildcard()}})
	if err != nil {
		t.Fatal(err)
	}
	for len(kinds) < 3 {
		msg, err := cons.Next(jetstream.FetchMaxWait(10 * time.Second))
		if err != nil {
			t.Fatalf("audit events so far %v: %v", kinds, err)
		}
		var e wire.AuditEvent
		_ = json.Unmarshal(msg.Data(), &e)
		kinds[e.Kind] = e
		if e.Operator != sess.who() {
			t.Errorf("%s names %q, want %q", e.Kind, e.Operator, sess.who())
		}
	}
	if e := kinds[wire.KindOperatorRelease]; e.JobID != "j2" || e.Source != "automation" {
		t.Errorf("release event %+v", e)
	}
	if e := kinds[wire.KindOperatorPause]; e.TenantID != tenant || e.Kind == "" {
		t.Errorf("pause event %+v (events %v)", e, kinds)
	}
	if _, ok := kinds[wire.KindOperatorResume]; !ok {
		t.Errorf("no resume event: %v", kinds)
	}
}
