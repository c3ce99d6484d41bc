package deploy

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/recoverpasscode/recoverpasscode/gateway"
	"github.com/recoverpasscode/recoverpasscode/graph/graphsim"
	"github.com/recoverpasscode/recoverpasscode/internal/testsystem"
	"github.com/recoverpasscode/recoverpasscode/wire"
)

// requestsBucket is the gateway's KV bucket of request records, and
// deliveriesBucket write-back's of failed deliveries.
const (
	requestsBucket   = "recoverpasscode_requests"
	deliveriesBucket = "recoverpasscode_deliveries"
)

// durableOn is a denial action: a durable pull consumer named name over
// stream with the filter subject, as write-back makes on the results.
func durableOn(stream, name, filter string) func(context.Context, *peer) error {
	return func(ctx context.Context, p *peer) error {
		_, err := p.js.CreateOrUpdateConsumer(ctx, stream, jetstream.ConsumerConfig{Durable: name, FilterSubject: filter, AckPolicy: jetstream.AckExplicitPolicy})
		return err
	}
}

// TestGatewayPermissionsAreNATSPermissions proves that the gateway user of
// accounts.conf is allowed and denied exactly what gateway.NATSPermissions
// lists, in every server config: what the gateway package says it needs
// (and proves by running as it) is what the deployment grants, no more.
// A permission the gateway gains (write-back) must be added to both.
func TestGatewayPermissionsAreNATSPermissions(t *testing.T) {
	setPasswords(t)
	grantsExactly(t, "gateway", "gateway.NATSPermissions", gateway.NATSPermissions("", inboxPrefix("gateway")))
}

// grantsExactly checks that user of accounts.conf is allowed and denied
// exactly what want (the list named list) holds, in every server config:
// no subscription denied, no allow_responses.
func grantsExactly(t *testing.T, user, list string, want gateway.Permissions) {
	t.Helper()
	for _, path := range natsConfigs(t) {
		opts, err := server.ProcessConfigFile(path)
		if err != nil {
			t.Fatalf("load %s: %v", path, err)
		}
		if opts.ServerName == "" {
			continue // an include, not a server
		}
		t.Run(path, func(t *testing.T) {
			i := slices.IndexFunc(opts.Users, func(u *server.User) bool { return u.Username == user })
			if i < 0 || opts.Users[i].Permissions == nil {
				t.Fatalf("no user %s with permissions", user)
			}
			p := opts.Users[i].Permissions
			if p.Publish == nil || p.Subscribe == nil {
				t.Fatalf("the %s user lacks publish or subscribe permissions", user)
			}
			sameSubjects(t, list, "publish allow", p.Publish.Allow, want.Publish)
			sameSubjects(t, list, "publish deny", p.Publish.Deny, want.DenyPublish)
			sameSubjects(t, list, "subscribe allow", p.Subscribe.Allow, want.Subscribe)
			if len(p.Subscribe.Deny) > 0 {
				t.Errorf("subscribe deny %v: %s denies no subscription", p.Subscribe.Deny, list)
			}
			if p.Response != nil {
				t.Errorf("allow_responses is set: the %s answers no request", user)
			}
		})
	}
}

// sameSubjects reports every subject in one list and not the other.
func sameSubjects(t *testing.T, list, what string, got, want []string) {
	t.Helper()
	for _, s := range got {
		if !slices.Contains(want, s) {
			t.Errorf("%s: accounts.conf grants %s, which %s does not list", what, s, list)
		}
	}
	for _, s := range want {
		if !slices.Contains(got, s) {
			t.Errorf("%s: %s lists %s, which accounts.conf does not grant", what, list, s)
		}
	}
}

// gatewayRoundTrip runs the gateway's own code (package gateway, in
// process) on the gateway user's connection, and goes through every route
// that touches NATS: a job submitted without waiting is queued (its
// record read back), the test's worker w takes it and stores its result,
// which GET, a retried POST and the list then read; a job submitted with
// Prefer: wait gets its result on the subscription the gateway made first.
// It runs after operate, so that the dead letters it counts are the
// sources' alone.
func gatewayRoundTrip(ctx context.Context, t *testing.T, gw, w *peer, jobs jetstream.Consumer) {
	t.Helper()
	key, hash, err := gateway.NewAPIKey()
	if err != nil {
		t.Fatal(err)
	}
	srv, err := gateway.New(gateway.Config{
		NATS:     gw.nc,
		TenantID: testsystem.Tenant,
		Sources:  []gateway.Source{{Name: "ticketing", APIKeys: []string{hash}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	defer hs.Close()
	call := func(method, path, body string, headers ...string) (int, map[string]any) {
		t.Helper()
		req, err := http.NewRequestWithContext(ctx, method, hs.URL+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+key)
		for i := 0; i+1 < len(headers); i += 2 {
			req.Header.Set(headers[i], headers[i+1])
		}
		resp, err := hs.Client().Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		var m map[string]any
		_ = json.Unmarshal(raw, &m)
		return resp.StatusCode, m
	}

	body := `{"managedDeviceId":"0f6a7a2c-3d1e-4a6b-9c1d-2b7e8f9a0b1c","ticket":"INC-GW-1"}`
	status, m := call(http.MethodPost, "/v1/jobs", body, "Idempotency-Key", "INC-GW-1")
	id, _ := m["jobId"].(string)
	if status != http.StatusAccepted || id != gateway.JobID("ticketing", "INC-GW-1") {
		t.Fatalf("POST: %d %v, want 202 naming the job of the key", status, m)
	}
	if status, m := call(http.MethodGet, "/v1/jobs/"+id, ""); status != http.StatusOK || m["status"] != "queued" {
		t.Fatalf("GET of the queued job: %d %v", status, m)
	}
	answerGatewayJob(ctx, t, w, jobs, id)
	if status, m := call(http.MethodGet, "/v1/jobs/"+id, ""); status != http.StatusOK || m["status"] != string(wire.Succeeded) {
		t.Errorf("GET of the answered job: %d %v", status, m)
	}
	if status, m := call(http.MethodPost, "/v1/jobs", body, "Idempotency-Key", "INC-GW-1"); status != http.StatusOK || m["jobId"] != id {
		t.Errorf("the POST retried: %d %v, want 200 with the result", status, m)
	}
	if status, m := call(http.MethodGet, "/v1/jobs?ticket=INC-GW-1", ""); status != http.StatusOK || len(m["jobs"].([]any)) != 1 {
		t.Errorf("GET /v1/jobs?ticket=INC-GW-1: %d %v", status, m)
	}

	waited := make(chan map[string]any, 1)
	go func() {
		status, m := call(http.MethodPost, "/v1/jobs", `{"managedDeviceId":"0f6a7a2c-3d1e-4a6b-9c1d-2b7e8f9a0b1c"}`,
			"Idempotency-Key", "INC-GW-2", "Prefer", "wait=10")
		m["httpStatus"] = float64(status)
		waited <- m
	}()
	answerGatewayJob(ctx, t, w, jobs, gateway.JobID("ticketing", "INC-GW-2"))
	if m := <-waited; m["httpStatus"] != float64(http.StatusOK) || m["status"] != string(wire.Succeeded) {
		t.Errorf("POST with Prefer: wait: %v, want 200 succeeded", m)
	}
	resp, err := hs.Client().Get(hs.URL + "/readyz")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("/readyz: %v %v", resp, err)
	}
	if resp != nil {
		resp.Body.Close()
	}
}

// answerGatewayJob has the worker take the job id from the jobs consumer,
// acknowledge it and store its result where the gateway reads it.
func answerGatewayJob(ctx context.Context, t *testing.T, w *peer, jobs jetstream.Consumer, id string) {
	t.Helper()
	msg, err := jobs.Next(jetstream.FetchContext(ctx))
	if err != nil {
		t.Fatalf("worker: fetch the gateway's job: %v", err)
	}
	var j wire.Job
	if err := json.Unmarshal(msg.Data(), &j); err != nil || j.ID != id || msg.Subject() != "recoverpasscode.jobs.ticketing" {
		t.Fatalf("worker: got %s on %s (%v), want job %s on recoverpasscode.jobs.ticketing", msg.Data(), msg.Subject(), err, id)
	}
	if err := msg.DoubleAck(ctx); err != nil {
		t.Fatalf("worker: acknowledge %s: %v", id, err)
	}
	res, _ := json.Marshal(wire.Result{JobID: id, IdempotencyKey: j.IdempotencyKey, Source: "ticketing",
		ManagedDeviceID: j.ManagedDeviceID, Ticket: j.Ticket, Status: wire.Succeeded, Attempts: 1})
	if _, err := w.js.Publish(ctx, "recoverpasscode.results.ticketing."+id, res, jetstream.WithMsgID(id+"/result"), jetstream.WithExpectStream(resultsStream)); err != nil {
		t.Fatalf("worker: store the result of %s: %v", id, err)
	}
}

// gatewayDenials lists what the gateway user must not be able to do: forge
// what only the worker publishes, take or read jobs, read what is not a
// result or its own request record, touch the worker's buckets, or
// create, change or delete any stream, consumer or stored message.
func gatewayDenials(gw *peer) []denial {
	return []denial{
		// What only the worker publishes.
		{name: "gateway publishes a result", who: gw, kind: "publish",
			subject: "recoverpasscode.results.ticketing.x", do: publish("recoverpasscode.results.ticketing.x")},
		{name: "gateway forges a dead letter", who: gw, kind: "publish",
			subject: "recoverpasscode.dlq.ticketing", do: publish("recoverpasscode.dlq.ticketing")},
		{name: "gateway publishes an audit event", who: gw, kind: "publish",
			subject: "recoverpasscode.audit.ticketing.9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d.0f6a7a2c-3d1e-4a6b-9c1d-2b7e8f9a0b1c.20261202", do: publish("recoverpasscode.audit.ticketing.9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d.0f6a7a2c-3d1e-4a6b-9c1d-2b7e8f9a0b1c.20261202")},
		{name: "gateway answers into ticketing's inbox", who: gw, kind: "publish",
			subject: "_INBOX.ticketing.x", do: publish("_INBOX.ticketing.x")},
		{name: "gateway answers into its own inbox", who: gw, kind: "publish",
			subject: "_INBOX.gateway.x", do: publish("_INBOX.gateway.x")},
		{name: "gateway submits on a subject that is not a source's", who: gw, kind: "publish",
			subject: "recoverpasscode.jobs.ticketing.extra", do: publish("recoverpasscode.jobs.ticketing.extra")},

		// Jobs are the worker's to take.
		{name: "gateway subscribes to jobs", who: gw, kind: "subscription",
			subject: "recoverpasscode.jobs.>", do: subscribe("recoverpasscode.jobs.>")},
		{name: "gateway pulls jobs from the worker consumer", who: gw, kind: "publish",
			subject: "$JS.API.CONSUMER.MSG.NEXT." + jobsStream + "." + consumerName,
			do:      request("$JS.API.CONSUMER.MSG.NEXT."+jobsStream+"."+consumerName, `{"batch":1}`)},
		{name: "gateway acknowledges a job", who: gw, kind: "publish",
			subject: "$JS.ACK." + jobsStream + ".worker.1.1.1.1.0", do: publish("$JS.ACK." + jobsStream + ".worker.1.1.1.1.0")},
		{name: "gateway reads jobs through a consumer", who: gw, kind: "publish",
			subject: "$JS.API.CONSUMER.CREATE." + jobsStream + ".*.recoverpasscode.jobs.>",
			do:      orderedOn(jobsStream, "recoverpasscode.jobs.>")},

		// Reading results only, and only as the gateway does.
		{name: "gateway subscribes to every result, a batch's included", who: gw, kind: "subscription",
			subject: "recoverpasscode.results.>", do: subscribe("recoverpasscode.results.>")},
		{name: "gateway reads every result through an unfiltered consumer", who: gw, kind: "publish",
			subject: "$JS.API.CONSUMER.CREATE." + resultsStream + ".*", do: orderedOn(resultsStream)},
		{name: "gateway reads the DLQ", who: gw, kind: "publish",
			subject: "$JS.API.CONSUMER.CREATE." + dlqStream + ".*.recoverpasscode.dlq.>",
			do:      orderedOn(dlqStream, "recoverpasscode.dlq.>")},
		{name: "gateway reads the audit stream", who: gw, kind: "publish",
			subject: "$JS.API.CONSUMER.CREATE." + auditStream + ".*.recoverpasscode.audit.>",
			do:      orderedOn(auditStream, "recoverpasscode.audit.>")},
		{name: "gateway subscribes to every inbox", who: gw, kind: "subscription",
			subject: "_INBOX.>", do: subscribe("_INBOX.>")},
		{name: "gateway subscribes to ticketing's inboxes", who: gw, kind: "subscription",
			subject: "_INBOX.ticketing.>", do: subscribe("_INBOX.ticketing.>")},

		// The worker's buckets.
		{name: "gateway opens the idempotency bucket", who: gw, kind: "publish",
			subject: "$JS.API.STREAM.INFO.KV_" + keysBucket,
			do:      func(ctx context.Context, p *peer) error { _, err := p.js.KeyValue(ctx, keysBucket); return err }},
		{name: "gateway writes an idempotency record", who: gw, kind: "publish",
			subject: "$KV." + keysBucket + ".key", do: publish("$KV." + keysBucket + ".key")},
		{name: "gateway pauses a tenant in the rate-limit bucket", who: gw, kind: "publish",
			subject: "$KV." + limitsBucket + ".tenant", do: publish("$KV." + limitsBucket + ".tenant")},
		// It reads a source's budget window and the held records, no more.
		{name: "gateway writes a source's budget window", who: gw, kind: "publish",
			subject: "$KV." + limitsBucket + ".quota.automation", do: publish("$KV." + limitsBucket + ".quota.automation")},
		{name: "gateway releases a held job", who: gw, kind: "publish",
			subject: "$KV." + limitsBucket + ".held.automation.j1", do: publish("$KV." + limitsBucket + ".held.automation.j1")},
		{name: "gateway reads a rate-limit window", who: gw, kind: "publish",
			subject: "$JS.API.DIRECT.GET.KV_" + limitsBucket + ".$KV." + limitsBucket + ".window.app.tenant",
			do:      request("$JS.API.DIRECT.GET.KV_"+limitsBucket+".$KV."+limitsBucket+".window.app.tenant", "")},

		// Streams, buckets, consumers and stored messages stay as they are.
		{name: "gateway creates the requests bucket", who: gw, kind: "publish",
			subject: "$JS.API.STREAM.CREATE.KV_" + requestsBucket,
			do:      request("$JS.API.STREAM.CREATE.KV_"+requestsBucket, `{"name":"KV_`+requestsBucket+`"}`)},
		{name: "gateway deletes the requests bucket", who: gw, kind: "publish",
			subject: "$JS.API.STREAM.DELETE.KV_" + requestsBucket,
			do:      func(ctx context.Context, p *peer) error { return p.js.DeleteKeyValue(ctx, requestsBucket) }},
		{name: "gateway purges the requests bucket", who: gw, kind: "publish",
			subject: "$JS.API.STREAM.PURGE.KV_" + requestsBucket, do: request("$JS.API.STREAM.PURGE.KV_"+requestsBucket, `{}`)},
		{name: "gateway changes the results stream", who: gw, kind: "publish",
			subject: "$JS.API.STREAM.UPDATE." + resultsStream,
			do: func(ctx context.Context, p *peer) error {
				_, err := p.js.UpdateStream(ctx, jetstream.StreamConfig{Name: resultsStream, Subjects: []string{"recoverpasscode.results.>"}, MaxAge: time.Hour})
				return err
			}},
		{name: "gateway purges the results stream", who: gw, kind: "publish",
			subject: "$JS.API.STREAM.PURGE." + resultsStream, do: request("$JS.API.STREAM.PURGE."+resultsStream, `{}`)},
		{name: "gateway deletes a stored result", who: gw, kind: "publish",
			subject: "$JS.API.STREAM.MSG.DELETE." + resultsStream, do: request("$JS.API.STREAM.MSG.DELETE."+resultsStream, `{"seq":1}`)},
		{name: "gateway deletes the jobs stream", who: gw, kind: "publish",
			subject: "$JS.API.STREAM.DELETE." + jobsStream,
			do:      func(ctx context.Context, p *peer) error { return p.js.DeleteStream(ctx, jobsStream) }},
		{name: "gateway deletes the worker consumer", who: gw, kind: "publish",
			subject: "$JS.API.CONSUMER.DELETE." + jobsStream + "." + consumerName,
			do:      func(ctx context.Context, p *peer) error { return p.js.DeleteConsumer(ctx, jobsStream, consumerName) }},
		{name: "gateway declares a stream", who: gw, kind: "publish",
			subject: "$JS.API.STREAM.CREATE.SNOOP",
			do: func(ctx context.Context, p *peer) error {
				_, err := p.js.CreateStream(ctx, jetstream.StreamConfig{Name: "SNOOP", Subjects: []string{"snoop.>"}})
				return err
			}},

		// Write-back's consumers stay on results, and its bucket is used,
		// never changed.
		{name: "gateway makes a durable consumer of jobs", who: gw, kind: "publish",
			subject: "$JS.API.CONSUMER.CREATE." + jobsStream + ".writeback_ticketing_x.recoverpasscode.jobs.>",
			do:      durableOn(jobsStream, "writeback_ticketing_x", "recoverpasscode.jobs.>")},
		{name: "gateway makes a durable consumer of dead letters", who: gw, kind: "publish",
			subject: "$JS.API.CONSUMER.CREATE." + dlqStream + ".writeback_ticketing_x.recoverpasscode.dlq.>",
			do:      durableOn(dlqStream, "writeback_ticketing_x", "recoverpasscode.dlq.>")},
		{name: "gateway makes a durable consumer of the audit stream", who: gw, kind: "publish",
			subject: "$JS.API.CONSUMER.CREATE." + auditStream + ".writeback_ticketing_x.recoverpasscode.audit.>",
			do:      durableOn(auditStream, "writeback_ticketing_x", "recoverpasscode.audit.>")},
		{name: "gateway reads a dead letter by its sequence", who: gw, kind: "publish",
			subject: "$JS.API.STREAM.MSG.GET." + dlqStream, do: request("$JS.API.STREAM.MSG.GET."+dlqStream, `{"seq":1}`)},
		{name: "gateway inspects the worker consumer", who: gw, kind: "publish",
			subject: "$JS.API.CONSUMER.INFO." + jobsStream + "." + consumerName, do: request("$JS.API.CONSUMER.INFO."+jobsStream+"."+consumerName, "")},
		{name: "gateway acknowledges a dead letter", who: gw, kind: "publish",
			subject: "$JS.ACK." + dlqStream + ".reader.1.1.1.1.0", do: publish("$JS.ACK." + dlqStream + ".reader.1.1.1.1.0")},
		{name: "gateway deletes the deliveries bucket", who: gw, kind: "publish",
			subject: "$JS.API.STREAM.DELETE.KV_" + deliveriesBucket,
			do:      func(ctx context.Context, p *peer) error { return p.js.DeleteKeyValue(ctx, deliveriesBucket) }},
		{name: "gateway purges the deliveries bucket", who: gw, kind: "publish",
			subject: "$JS.API.STREAM.PURGE.KV_" + deliveriesBucket, do: request("$JS.API.STREAM.PURGE.KV_"+deliveriesBucket, `{}`)},
		{name: "gateway reconfigures the deliveries bucket", who: gw, kind: "publish",
			subject: "$JS.API.STREAM.UPDATE.KV_" + deliveriesBucket,
			do:      request("$JS.API.STREAM.UPDATE.KV_"+deliveriesBucket, `{"name":"KV_`+deliveriesBucket+`"}`)},

		// The account and the system.
		{name: "gateway lists the account's streams", who: gw, kind: "publish",
			subject: "$JS.API.STREAM.NAMES", do: request("$JS.API.STREAM.NAMES", `{}`)},
		{name: "gateway asks the system account for every connection", who: gw, kind: "publish",
			subject: "$SYS.REQ.SERVER.PING.CONNZ", do: request("$SYS.REQ.SERVER.PING.CONNZ", `{}`)},
	}
}

// TestGatewayRunsAsItsUser runs the real gateway, built by the test, as
// user gateway against nats/dev.conf, configured as deploy/ configures it
// (NATS_USER=gateway, NATS_INBOX_PREFIX=_INBOX.gateway), in front of a
// real worker logged in as "worker" and the Graph double: a job submitted
// with Prefer: wait gets its result in one call; its retry gets the same
// job with no second Graph call; a job submitted without waiting is
// followed to its result; a batch's job submitted over NATS by user batch
// is read back with its batch's counts; the lists answer; and the server
// refused the gateway nothing.
func TestGatewayRunsAsItsUser(t *testing.T) {
	passwords := setPasswords(t)
	bin := buildCommand(t, "gateway")
	url := startFromConfig(t, filepath.Join("nats", "dev.conf"), nil).ClientURL()
	sys := testsystem.Start(t, graphsim.Config{Limit: -1}) // for its Graph double
	workerLogs := startWorker(t, sys, url, passwords["worker"])

	keys := map[string]string{}
	var sources []string
	for _, s := range []string{"ticketing", "batch"} {
		key, hash, err := gateway.NewAPIKey()
		if err != nil {
			t.Fatal(err)
		}
		keys[s] = key
		sources = append(sources, s+"="+hash)
	}
	addr := testsystem.FreeAddr(t)
	var logs testsystem.Buffer
	cmd := exec.Command(bin)
	cmd.Env = append(gatewayEnv(),
		"NATS_URL="+url, "NATS_USER=gateway", "NATS_PASSWORD="+passwords["gateway"],
		"NATS_INBOX_PREFIX="+inboxPrefix("gateway"),
		"GATEWAY_HTTP_ADDR="+addr, "GATEWAY_SOURCES="+strings.Join(sources, ","),
		"AZURE_TENANT_ID="+testsystem.Tenant, "RECOVER_LOG_LEVEL=debug")
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	testsystem.WaitReadyz(t, addr, http.StatusOK, 20*time.Second)

	call := func(source, method, path, body string, headers ...string) (int, http.Header, map[string]any) {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), method, "http://"+addr+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+keys[source])
		for i := 0; i+1 < len(headers); i += 2 {
			req.Header.Set(headers[i], headers[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		var m map[string]any
		if err := json.Unmarshal(raw, &m); err != nil {
			t.Fatalf("%s %s: %d %s is not a JSON object", method, path, resp.StatusCode, raw)
		}
		return resp.StatusCode, resp.Header, m
	}

	dev := testsystem.DeviceN(31)
	body := `{"managedDeviceId":"` + dev + `","ticket":"INC31"}`
	status, _, m := call("ticketing", http.MethodPost, "/v1/jobs", body, "Idempotency-Key", "INC31", "Prefer", "wait=10")
	if status != http.StatusOK || m["status"] != string(wire.Succeeded) {
		t.Fatalf("POST with Prefer: wait: %d %v\n%s", status, m, logs.String())
	}
	id := m["jobId"]
	if status, _, m := call("ticketing", http.MethodPost, "/v1/jobs", body, "Idempotency-Key", "INC31"); status != http.StatusOK || m["jobId"] != id {
		t.Errorf("the POST retried: %d %v, want 200 with the result of %v", status, m, id)
	}
	if n := sys.GS.Performed(dev); n != 1 {
		t.Errorf("Graph recovered the device %d times, want once", n)
	}

	status, h, m := call("ticketing", http.MethodPost, "/v1/jobs", `{"managedDeviceId":"`+testsystem.DeviceN(32)+`"}`)
	if status != http.StatusAccepted || h.Get("Location") == "" {
		t.Fatalf("POST: %d %v", status, m)
	}
	if !testsystem.Eventually(20*time.Second, func() bool {
		status, _, m = call("ticketing", http.MethodGet, h.Get("Location"), "")
		return status == http.StatusOK && m["status"] == string(wire.Succeeded)
	}) {
		t.Errorf("GET %s: %d %v, want the job succeeded", h.Get("Location"), status, m)
	}
	if status, _, m := call("ticketing", http.MethodGet, "/v1/jobs?ticket=INC31", ""); status != http.StatusOK || len(m["jobs"].([]any)) != 1 {
		t.Errorf("GET /v1/jobs?ticket=INC31: %d %v", status, m)
	}

	batch := connect(t, url, "batch", passwords["batch"])
	names := wire.Names{}
	job, _ := json.Marshal(wire.Job{ID: "b1-0001", ManagedDeviceID: testsystem.DeviceN(33), ReplyTo: names.Result("batch", "b1.b1-0001")})
	if _, err := batch.js.Publish(t.Context(), names.Jobs("batch"), job, jetstream.WithMsgID("b1-0001"), jetstream.WithExpectStream(jobsStream)); err != nil {
		t.Fatal(err)
	}
	if !testsystem.Eventually(20*time.Second, func() bool {
		status, _, m = call("batch", http.MethodGet, "/v1/batches/b1", "")
		return status == http.StatusOK && m["succeeded"] == float64(1)
	}) {
		t.Errorf("GET /v1/batches/b1: %d %v, want one succeeded", status, m)
	}
	if status, _, m := call("batch", http.MethodGet, "/v1/jobs/b1-0001", ""); status != http.StatusOK || m["status"] != string(wire.Succeeded) {
		t.Errorf("GET /v1/jobs/b1-0001 as batch: %d %v", status, m)
	}
	if status, _, _ := call("ticketing", http.MethodGet, "/v1/jobs/b1-0001", ""); status != http.StatusNotFound {
		t.Errorf("GET of batch's job as ticketing: %d, want 404", status)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	stopped = true
	if err := <-exited; err != nil {
		t.Errorf("the gateway ended with %v:\n%s", err, logs.String())
	}
	if l := logs.String(); strings.Contains(strings.ToLower(l), "permissions violation") {
		t.Errorf("the server refused the gateway a request:\n%s", l)
	}
	batch.expectNoDenials(t)
	expectNoWorkerDenials(t, workerLogs)
}

// gatewayEnv is this process's environment without the settings the
// gateway reads, so that the test's alone say how it runs.
func gatewayEnv() []string {
	return slices.DeleteFunc(ownEnv(), func(kv string) bool {
		return strings.HasPrefix(kv, "GATEWAY_") || strings.HasPrefix(kv, "AZURE_")
	})
}

// helpVariable is a variable the gateway's --help names for a flag.
var helpVariable = regexp.MustCompile(`\[\$([A-Z0-9_]+)\]`)

// TestGatewayEnvironmentNames proves that every variable the gateway's
// Kubernetes objects, its Dockerfile stage and its compose service set is
// one the real gateway
// reads, as its --help lists them, so a typo cannot leave a setting at its
// default.
func TestGatewayEnvironmentNames(t *testing.T) {
	var help bytes.Buffer
	cmd := exec.Command(buildCommand(t, "gateway"), "--help")
	cmd.Env, cmd.Stdout, cmd.Stderr = gatewayEnv(), &help, &help
	if err := cmd.Run(); err != nil {
		t.Fatalf("gateway --help: %v\n%s", err, help.String())
	}
	reads := map[string]bool{"GOMEMLIMIT": true} // read by the Go runtime
	for _, m := range helpVariable.FindAllStringSubmatch(help.String(), -1) {
		reads[m[1]] = true
	}
	if !reads["GATEWAY_CONFIG"] || !reads["NATS_PASSWORD"] {
		t.Fatalf("--help names %v; the test no longer reads it right", reads)
	}
	names := map[string][]string{}
	for _, doc := range mustDocs(t, filepath.Join("kubernetes", "gateway-configmap.yaml")) {
		for k := range dig(doc, "data").(map[string]any) {
			names["kubernetes/gateway-configmap.yaml"] = append(names["kubernetes/gateway-configmap.yaml"], k)
		}
	}
	for _, doc := range mustDocs(t, filepath.Join("kubernetes", "gateway-deployment.yaml")) {
		containers, _ := dig(doc, "spec", "template", "spec", "containers").([]any)
		for _, c := range containers {
			env, _ := dig(c, "env").([]any)
			for _, e := range env {
				names["kubernetes/gateway-deployment.yaml"] = append(names["kubernetes/gateway-deployment.yaml"], str(e, "name"))
			}
		}
	}
	names["Dockerfile (gateway)"] = dockerfileEnvNames(t, "Dockerfile")["gateway"]
	env, _ := dig(mustDocs(t, "compose.yaml")[0], "services", "gateway", "environment").(map[string]any)
	for k := range env {
		names["compose.yaml gateway"] = append(names["compose.yaml gateway"], k)
	}
	for where, list := range names {
		if len(list) == 0 {
			t.Errorf("%s: no environment variable found; the test no longer reads it right", where)
		}
		for _, n := range list {
			if !reads[n] {
				t.Errorf("%s: %s is not a variable the gateway reads", where, n)
			}
		}
	}
}
