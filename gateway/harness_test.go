package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/recoverpasscode/recoverpasscode/graph/graphsim"
	"github.com/recoverpasscode/recoverpasscode/internal/testsystem"
)

// The gateway's API registration in the Entra ID double, and the client
// apps that call it.
const (
	apiAppID       = "a0a0a0a0-1111-4222-8333-444444444444"
	apiURI         = "api://recoverpasscode-gateway"
	automationApp  = "b1b1b1b1-1111-4222-8333-444444444444"
	unlistedApp    = "c2c2c2c2-1111-4222-8333-444444444444"
	rolelessApp    = "d3d3d3d3-1111-4222-8333-444444444444"
	appSecret      = "client-secret-of-the-test-apps"
	otherAPIAppID  = "e4e4e4e4-1111-4222-8333-444444444444"
	otherAPIURI    = "api://another-api"
	rolelessSource = "roleless"
)

// harness is a running system (NATS, the Graph and Entra ID double,
// workers on demand) with a gateway in front of it, served over HTTP on
// loopback and called with a real client.
type harness struct {
	t      testing.TB
	sys    *testsystem.System
	gw     *Server
	url    string
	client *http.Client
	// keys holds an API key per source: ticketing, other, batch.
	keys    map[string]string
	sources []Source
	logs    *testsystem.Buffer
}

// newHarness starts a system and a gateway; workers are started by the
// test (startWorker) so that it can look at jobs still queued.
func newHarness(t testing.TB) *harness {
	t.Helper()
	return newSystem(t, false)
}

// newSystem starts the system, and the gateway on its NATS server unless
// noGateway: then the test starts it (start) where it wants.
func newSystem(t testing.TB, noGateway bool) *harness {
	t.Helper()
	sys := testsystem.Start(t, graphsim.Config{})
	h := &harness{t: t, sys: sys, keys: map[string]string{}, logs: &testsystem.Buffer{}}
	gs := sys.GS
	gs.AddAPI(graphsim.API{AppID: apiAppID, IdentifierURI: apiURI})
	gs.AddAPI(graphsim.API{AppID: otherAPIAppID, IdentifierURI: otherAPIURI})
	for _, app := range []string{automationApp, unlistedApp, rolelessApp} {
		gs.AddApp(app, appSecret)
	}
	gs.AssignAppRole(automationApp, apiAppID, DefaultRole)
	gs.AssignAppRole(unlistedApp, apiAppID, DefaultRole)
	gs.AssignAppRole(automationApp, otherAPIAppID, DefaultRole)
	gs.AssignAppRole(rolelessApp, apiAppID, "Jobs.Read")

	var sources []Source
	for _, name := range []string{"ticketing", "other", "batch"} {
		key, hash, err := NewAPIKey()
		if err != nil {
			t.Fatal(err)
		}
		h.keys[name] = key
		sources = append(sources, Source{Name: name, APIKeys: []string{hash}})
	}
	h.sources = append(sources,
		Source{Name: "automation", EntraApps: []string{automationApp}},
		Source{Name: rolelessSource, EntraApps: []string{rolelessApp}})
	if !noGateway {
		h.start(sys.NS.URL(), h.sources)
	}
	return h
}

// start serves a gateway connected to natsURL until the test ends.
func (h *harness) start(natsURL string, sources []Source, opts ...nats.Option) {
	t := h.t
	opts = append([]nats.Option{nats.ReconnectBufSize(-1), nats.MaxReconnects(-1), nats.ReconnectWait(100 * time.Millisecond), nats.RetryOnFailedConnect(true)}, opts...)
	nc, err := nats.Connect(natsURL, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	log := zerolog.New(h.logs).Level(zerolog.DebugLevel)
	gw, err := New(Config{
		NATS:          nc,
		TenantID:      testsystem.Tenant,
		Tenants:       []string{testsystem.Tenant, testsystem.OtherTenant},
		Sources:       sources,
		Audiences:     []string{apiAppID},
		AuthorityHost: h.sys.GS.AuthorityHost(),
		HTTPClient:    h.sys.GS.Client(),
		Log:           &log,
		RetryAfter:    time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	h.gw = gw
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	hard, cancelHard := context.WithCancel(context.Background())
	stop := context.AfterFunc(ctx, func() { time.AfterFunc(5*time.Second, cancelHard) })
	done := make(chan error, 1)
	go func() { done <- gw.Serve(ctx, hard, ln) }()
	h.url = "http://" + ln.Addr().String()
	h.client = &http.Client{Timeout: 90 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 128}}
	t.Cleanup(func() {
		cancel()
		defer stop()
		defer cancelHard()
		if err := <-done; err != nil {
			t.Errorf("gateway: %v", err)
		}
		h.checkDocumented()
	})
}

// startWorker runs one worker against the system.
func (h *harness) startWorker(name string) {
	h.t.Helper()
	h.sys.StartWorker(h.sys.Config(name))
}

// reply is an answer of the gateway.
type reply struct {
	status int
	header http.Header
	body   []byte
}

func (r reply) json(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("answer %d is not a JSON object: %v: %s", r.status, err, r.body)
	}
	return m
}

// problem checks r is a problem of the given status and type.
func (r reply) problem(t testing.TB, status int, typ ProblemType) map[string]any {
	t.Helper()
	if r.status != status || r.header.Get("Content-Type") != "application/problem+json" {
		t.Fatalf("answer %d (%s) %s, want %d problem+json", r.status, r.header.Get("Content-Type"), r.body, status)
	}
	p := r.json(t)
	if p["type"] != string(typ) || p["title"] == "" || p["detail"] == "" || p["status"] != float64(status) {
		t.Fatalf("problem %v, want type %s", p, typ)
	}
	return p
}

// do sends a request with the given headers ("Authorization" etc.).
func (h *harness) do(method, path string, body []byte, headers map[string]string) reply {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, h.url+path, bytes.NewReader(body))
	if err != nil {
		h.t.Errorf("%s %s: %v", method, path, err)
		return reply{header: http.Header{}}
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	// Errorf, not Fatalf: do also runs on goroutines of the test.
	resp, err := h.client.Do(req)
	if err != nil {
		h.t.Errorf("%s %s: %v", method, path, err)
		return reply{header: http.Header{}}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Errorf("%s %s: read: %v", method, path, err)
	}
	return reply{resp.StatusCode, resp.Header, b}
}

// as returns the Authorization header of a source's API key.
func (h *harness) as(source string, more ...string) map[string]string {
	m := map[string]string{"Authorization": "Bearer " + h.keys[source]}
	for i := 0; i+1 < len(more); i += 2 {
		m[more[i]] = more[i+1]
	}
	return m
}

// post submits body as source.
func (h *harness) post(source, body string, more ...string) reply {
	h.t.Helper()
	return h.do(http.MethodPost, "/v1/jobs", []byte(body), h.as(source, more...))
}

func (h *harness) get(source, path string) reply {
	h.t.Helper()
	return h.do(http.MethodGet, path, nil, h.as(source))
}

// token gets an access token from the Entra ID double for clientID with
// the client credentials grant.
func (h *harness) token(clientID, scope string) string {
	h.t.Helper()
	form := url.Values{"grant_type": {"client_credentials"}, "client_id": {clientID}, "client_secret": {appSecret}, "scope": {scope}}
	req, err := http.NewRequest(http.MethodPost, h.sys.GS.AuthorityHost()+"/"+testsystem.Tenant+"/oauth2/v2.0/token", strings.NewReader(form.Encode()))
	if err != nil {
		h.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := h.sys.GS.Client().Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || body.AccessToken == "" {
		h.t.Fatalf("token for %s: %d %v", clientID, resp.StatusCode, err)
	}
	return body.AccessToken
}

func device(n int) string { return testsystem.DeviceN(n) }

func jobBody(dev string, extra ...string) string {
	b := `{"managedDeviceId":"` + dev + `"`
	for i := 0; i+1 < len(extra); i += 2 {
		b += `,"` + extra[i] + `":"` + extra[i+1] + `"`
	}
	return b + "}"
}

// jobsStored is how many messages the jobs stream ever stored (its last
// sequence): the work queue removes jobs once done, so this counts what
// was published.
func (h *harness) jobsStored() uint64 {
	h.t.Helper()
	return h.streamLastSeq(h.sys.Names.JobsStream())
}

func (h *harness) streamLastSeq(name string) uint64 {
	h.t.Helper()
	s, err := h.sys.JS.Stream(context.Background(), name)
	if err != nil {
		h.t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		h.t.Fatal(err)
	}
	return info.State.LastSeq
}

// resultsOf counts the results stored under a job's subject.
func (h *harness) resultsOf(source, jobID string) uint64 {
	h.t.Helper()
	s, err := h.sys.JS.Stream(context.Background(), h.sys.Names.ResultsStream())
	if err != nil {
		h.t.Fatal(err)
	}
	subj := h.sys.Names.Result(source, jobID)
	info, err := s.Info(context.Background(), jetstream.WithSubjectFilter(subj))
	if err != nil {
		h.t.Fatal(err)
	}
	return info.State.Subjects[subj]
}

// waitResult polls GET /v1/jobs/{id} until the job has a result.
func (h *harness) waitResult(source, id string) map[string]any {
	h.t.Helper()
	var last reply
	ok := testsystem.Eventually(30*time.Second, func() bool {
		last = h.get(source, jobPath(id))
		st := last.json(h.t)["status"]
		return last.status == 200 && st != statusQueued && st != statusHeld
	})
	if !ok {
		h.t.Fatalf("job %s has no result: last answer %d %s", id, last.status, last.body)
	}
	return last.json(h.t)
}

// performed is how many times Graph performed the action on a device.
func (h *harness) performed(dev string) int {
	n := 0
	for _, c := range h.sys.GS.Calls() {
		if c.Performed && strings.EqualFold(c.DeviceID, dev) {
			n++
		}
	}
	return n
}

// checkDocumented fails the test when the gateway answered a route with
// a status that openapi.json does not list for it: every answer a test
// provoked is checked against the document.
func (h *harness) checkDocumented() {
	t := h.t
	doc := loadOpenAPI(t)
	families, err := h.gw.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != "recoverpasscode_gateway_requests_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			route, method, code := labels["route"], strings.ToLower(labels["method"]), labels["code"]
			if route == "other" {
				continue
			}
			if method == "head" {
				method = "get"
			}
			op, ok := doc.Paths[route][method]
			if !ok {
				if code != "405" {
					t.Errorf("%s %s answered %s but is not in openapi.json", method, route, code)
				}
				continue
			}
			if _, ok := op.Responses[code]; !ok {
				t.Errorf("%s %s answered %s, which openapi.json does not list", method, route, code)
			}
		}
	}
}

// parallelPosts sends n copies of one POST at once and returns the
// answers.
func (h *harness) parallelPosts(n int, source, body string, more ...string) []reply {
	out := make([]reply, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			out[i] = h.post(source, body, more...)
		}()
	}
	close(start)
	wg.Wait()
	return out
}

// counter returns the value of a counter of the gateway's registry with
// the given labels.
func (h *harness) counter(name string, labels map[string]string) float64 {
	h.t.Helper()
	families, err := h.gw.reg.Gather()
	if err != nil {
		h.t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	metric:
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if v, ok := labels[l.GetName()]; ok && v != l.GetValue() {
					continue metric
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}
