package console_test

import (
	"context"
	"flag"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/recoverpasscode/recoverpasscode/batch"
	"github.com/recoverpasscode/recoverpasscode/console"
	"github.com/recoverpasscode/recoverpasscode/dlq"
	"github.com/recoverpasscode/recoverpasscode/gateway"
	"github.com/recoverpasscode/recoverpasscode/graph/graphsim"
	"github.com/recoverpasscode/recoverpasscode/history"
	"github.com/recoverpasscode/recoverpasscode/internal/testsystem"
	"github.com/recoverpasscode/recoverpasscode/wire"
)

var updateScreenshots = flag.Bool("update-screenshots", false, "write a screenshot of each console page to docs/console/*.png")

// The console's app registration and people in the Entra ID double.
const (
	consoleApp    = "77777777-7777-4777-8777-777777777777"
	consoleSecret = "console-secret-0123456789"
	operatorUPN   = "operator@contoso.test"
	readerUPN     = "reader@contoso.test"
	batchName     = "console-test"
)

// stack is a system with a worker, and the gateway serving the console on
// loopback, as `worker --dev` serves them; the gateway and the console
// connect as the NATS user "console", with console.NATSPermissions alone.
type stack struct {
	*testsystem.System
	base string
}

func startStack(t *testing.T) *stack {
	t.Helper()
	sys := testsystem.StartConfig(t, graphsim.Config{}, console.LeastPrivilege())
	sys.StartWorker(sys.Config("worker-1"))
	nc, js := console.ConnectAsConsole(t, sys.NS.URL()) // the gateway's and the console's
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + ln.Addr().String()
	gs := sys.GS
	gs.AddApp(consoleApp, consoleSecret)
	gs.AddRedirectURI(consoleApp, base+console.CallbackPath)
	gs.AddUser(operatorUPN, "")
	gs.AssignUserAppRole(operatorUPN, consoleApp, console.RoleOperate)
	gs.AddUser(readerUPN, "")
	gs.AssignUserAppRole(readerUPN, consoleApp, console.RoleRead)
	con, err := console.New(console.Config{
		JetStream: js, TenantID: testsystem.Tenant, ClientID: consoleApp, ClientSecret: consoleSecret,
		AuthorityHost: gs.AuthorityHost(), BaseURL: base, HTTPClient: gs.Client(), History: history.New(js, sys.Names),
	})
	if err != nil {
		t.Fatal(err)
	}
	_, hash, err := gateway.NewAPIKey()
	if err != nil {
		t.Fatal(err)
	}
	gw, err := gateway.New(gateway.Config{NATS: nc, TenantID: testsystem.Tenant, Tenants: []string{testsystem.Tenant, testsystem.OtherTenant},
		Sources: []gateway.Source{{Name: "ticketing", APIKeys: []string{hash}}}, Console: con})
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: gw, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return &stack{System: sys, base: base}
}

// submitBatch publishes a batch of three devices, as enqueue --file does;
// the third device does not exist, so its job fails with Graph's 404 and
// is dead-lettered.
func (s *stack) submitBatch(t *testing.T) *batch.Batch {
	t.Helper()
	csv := "managedDeviceId,ticket\n" + testsystem.DeviceN(1) + ",INC0001\n" + testsystem.DeviceN(2) + ",INC0002\n" + testsystem.DeviceN(3) + ",INC0003\n"
	b, err := batch.Read(strings.NewReader(csv), batch.Options{Name: batchName, Names: s.Names, Defaults: batch.Defaults{TenantID: testsystem.Tenant}})
	if err != nil {
		t.Fatal(err)
	}
	s.GS.SetDeviceMissing(testsystem.DeviceN(3))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, row := range b.Rows {
		if _, err := dlq.PublishJob(ctx, s.JS, s.Names.Jobs(b.Source), &row.Job); err != nil {
			t.Fatal(err)
		}
	}
	return b
}

// browser starts headless Chromium at 1280 px wide. It fails in CI
// without Chromium (.ci/run installs it) and skips elsewhere.
func browser(t *testing.T) context.Context {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		if path, err = exec.LookPath("chromium-browser"); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatal("chromium is not installed: .ci/run installs it (apt-get install -y chromium)")
			}
			t.Skip("chromium is not installed (apt-get install -y chromium)")
		}
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox,
		chromedp.WindowSize(1280, 900),
		// The Entra ID double's certificate is signed by a CA made for the
		// test, which Chromium does not know.
		chromedp.Flag("ignore-certificate-errors", true),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(actx)
	ctx, cancelTimeout := context.WithTimeout(ctx, 90*time.Second)
	t.Cleanup(func() { cancelTimeout(); cancelCtx(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// do runs steps, failing the test with the page it was on.
func do(t *testing.T, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	start := time.Now()
	sctx, cancel := context.WithTimeout(ctx, stepTimeout)
	defer cancel()
	if err := chromedp.Do(sctx, steps...); err != nil {
		fail(t, ctx, what, err)
	}
	t.Logf("%s: %s", what, time.Since(start).Round(time.Millisecond))
}

// stepTimeout bounds one step, so that a step that waits in vain still
// leaves time to report the page it waited on.
const stepTimeout = 15 * time.Second

// value runs one action and returns its value.
func value[T any](t *testing.T, ctx context.Context, what string, a chromedp.Action[T]) T {
	t.Helper()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		fail(t, ctx, what, err)
	}
	return v
}

func fail(t *testing.T, ctx context.Context, what string, err error) {
	t.Helper()
	url, _ := chromedp.Run(ctx, chromedp.Location())
	body, _ := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("body")))
	t.Fatalf("%s: %v\nat %s:\n%s", what, err, url, truncate(body, 2000))
}

// loads runs trigger (a click or a submit that navigates) and waits for
// the new page's load event, so the next step reads the new page.
func loads(trigger chromedp.Action[chromedp.Void]) chromedp.Action[chromedp.Void] {
	return func(ctx context.Context, t *chromedp.Target) (chromedp.Void, error) {
		_, err := chromedp.WaitEvent(page.LoadEventFired, nil, trigger)(ctx, t)
		return chromedp.Void{}, err
	}
}

// text is the text of the element with id.
func text(t *testing.T, ctx context.Context, id string) string {
	t.Helper()
	return value(t, ctx, "read #"+id, chromedp.Text(chromedp.ID(id)))
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// screenshot writes the page to docs/console/<name>.png with
// -update-screenshots.
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	if !*updateScreenshots {
		return
	}
	png := value(t, ctx, "screenshot "+name, chromedp.FullScreenshot(100))
	dir := filepath.Join("..", "docs", "console")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

// signIn opens the console and signs in as upn with one click on the
// double's sign-in page.
func signIn(t *testing.T, ctx context.Context, base, upn string) {
	t.Helper()
	button := chromedp.Search(`//button[contains(., "Sign in as ` + upn + `")]`)
	do(t, ctx, "sign in as "+upn,
		chromedp.Navigate(base+"/"),
		chromedp.WaitVisible(button),
		loads(chromedp.Click(button)),
		chromedp.WaitVisible(chromedp.ID("live-overview")),
	)
	who := value(t, ctx, "who", chromedp.Text(chromedp.CSS(".who")))
	if !strings.Contains(who, upn) {
		t.Fatalf("signed in as %q, want %s", who, upn)
	}
}

// postStatus POSTs form from the page, as a forged or hand-made request
// would, and returns the HTTP status.
func postStatus(t *testing.T, ctx context.Context, path, form string) int {
	t.Helper()
	return value(t, ctx, "POST "+path, chromedp.Evaluate[int](`fetch(`+jsString(path)+`, {method: "POST", headers: {"Content-Type": "application/x-www-form-urlencoded"}, body: `+jsString(form)+`}).then(r => r.status)`, chromedp.EvalAwaitPromise))
}

func jsString(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

// TestConsoleInABrowser drives headless Chromium through the console: sign
// in through the Entra ID double, watch a batch complete, search a job and
// open it, follow it to the device's history, and replay the batch's dead
// letter with a new key, checking what the pages show and what the system
// did (the replay succeeded in Graph, the audit trail names the operator).
// Then a reader sees no replay and is refused one, and an action without
// its CSRF token is refused.
func TestConsoleInABrowser(t *testing.T) {
	s := startStack(t)
	b := s.submitBatch(t)
	ctx := browser(t)
	signIn(t, ctx, s.base, operatorUPN)

	missing := testsystem.DeviceN(3)
	failedRow := b.Rows[2].Job.ID
	do(t, ctx, "the batch completes",
		chromedp.Navigate(s.base+"/batches/batch/"+batchName),
		chromedp.WaitVisible(chromedp.ID("batch-complete")),
	)
	page := text(t, ctx, "live-batch")
	for _, want := range []string{"3 of 3 rows done", failedRow} {
		if !strings.Contains(page, want) {
			t.Fatalf("the batch page does not say %q:\n%s", want, page)
		}
	}
	if succeeded, failed := text(t, ctx, "count-succeeded"), text(t, ctx, "count-failed"); succeeded != "2" || failed != "1" {
		t.Fatalf("batch counts: %s succeeded, %s failed; want 2 and 1", succeeded, failed)
	}
	screenshot(t, ctx, "batch")

	device := testsystem.DeviceN(1)
	do(t, ctx, "search by device",
		chromedp.Navigate(s.base+"/jobs"),
		chromedp.SendKeys(chromedp.CSS("input[name=device]"), device),
		loads(chromedp.Submit(chromedp.CSS("input[name=device]"))),
		chromedp.WaitVisible(chromedp.ID("jobs")),
	)
	if page = text(t, ctx, "jobs"); !strings.Contains(page, b.Rows[0].Job.ID) || strings.Contains(page, b.Rows[1].Job.ID) {
		t.Fatalf("searching device %s lists:\n%s", device, page)
	}
	screenshot(t, ctx, "jobs")
	do(t, ctx, "open the job",
		loads(chromedp.Click(chromedp.CSS(`#jobs a[href^="/jobs/"]`))),
		chromedp.WaitVisible(chromedp.ID("attempts")),
	)
	if page = text(t, ctx, "attempts"); !strings.Contains(page, "graph_call") || !strings.Contains(page, "204") || !strings.Contains(page, "worker-1") {
		t.Fatalf("the job's attempts do not show its Graph call:\n%s", page)
	}
	screenshot(t, ctx, "job")
	do(t, ctx, "the device's history",
		loads(chromedp.Click(chromedp.ID("device-link"))),
		chromedp.WaitVisible(chromedp.ID("history")),
	)
	if page = text(t, ctx, "history"); !strings.Contains(page, b.Rows[0].Job.ID) || !strings.Contains(page, "decision") {
		t.Fatalf("the device's history does not show its job:\n%s", page)
	}
	screenshot(t, ctx, "device")

	// The device exists now; a replay with the job's key would be answered
	// with the stored 404, so the operator asks for a new key.
	s.GS.SetDevicePresent(missing)
	do(t, ctx, "the dead letters", chromedp.Navigate(s.base+"/dlq?batch="+batchName), chromedp.WaitVisible(chromedp.ID("dead-letters")))
	screenshot(t, ctx, "dlq")
	do(t, ctx, "ask to replay one", loads(chromedp.Click(chromedp.CSS(`#dead-letters a[href^="/dlq/replay"]`))), chromedp.WaitVisible(chromedp.ID("confirmation")))
	do(t, ctx, "with a new key", loads(chromedp.Click(chromedp.ID("new-key"))), chromedp.WaitVisible(chromedp.ID("keep-key")))
	matched, replays, page := text(t, ctx, "confirm-matched"), text(t, ctx, "confirm-replays"), text(t, ctx, "confirmation")
	if matched != "1" || replays != "1" || !strings.Contains(page, "new idempotency key") {
		t.Fatalf("confirmation: %s matched, %s replays:\n%s", matched, replays, page)
	}
	screenshot(t, ctx, "replay-confirm")
	do(t, ctx, "replay", loads(chromedp.Click(chromedp.ID("confirm-replay"))), chromedp.WaitVisible(chromedp.ID("replay-result")))
	replays = text(t, ctx, "replayed-count")
	replayID := value(t, ctx, "the new job", chromedp.Text(chromedp.CSS("#replays a")))
	if replays != "1" || !strings.HasPrefix(replayID, failedRow+"-r") {
		t.Fatalf("replayed %s job(s), new job %q", replays, replayID)
	}
	got := s.Results(batch.ResultSubject(s.Names, b.Source, batchName, replayID), 1, 20*time.Second)
	if res := got[replayID]; res.Status != wire.Succeeded || s.GS.Performed(missing) != 1 {
		t.Fatalf("the replayed job: %+v; Graph ran the action %d time(s) on the device", res, s.GS.Performed(missing))
	}
	events, err := history.New(s.JS, s.Names).Device(context.Background(), testsystem.Tenant, missing, 100)
	if err != nil {
		t.Fatal(err)
	}
	audited := false
	for _, e := range events {
		audited = audited || (e.Kind == wire.KindOperatorReplay && e.JobID == replayID && strings.HasPrefix(e.Operator, operatorUPN))
	}
	if !audited {
		t.Fatalf("no operator_replay event names %s for job %s: %+v", operatorUPN, replayID, events)
	}
	do(t, ctx, "the batch counts the replay",
		chromedp.Navigate(s.base+"/batches/batch/"+batchName),
		chromedp.Poll[chromedp.Void](`document.querySelector("#count-succeeded").textContent === "3"`, chromedp.WithPollingTimeout(20*time.Second)),
	)
	if status := postStatus(t, ctx, "/tenants/resume", "app=x&tenant=y"); status != http.StatusForbidden {
		t.Fatalf("an action without its CSRF token answered %d, want 403", status)
	}
	do(t, ctx, "the overview refreshes itself",
		chromedp.Navigate(s.base+"/"),
		chromedp.WaitVisible(chromedp.ID("tenants")),
		chromedp.Poll[chromedp.Void](`document.querySelector("#live-overview").dataset.updated && document.querySelector("#tenants")`, chromedp.WithPollingTimeout(10*time.Second)),
	)
	if dlqSize := text(t, ctx, "dlq-size"); dlqSize != "1" {
		t.Fatalf("the overview counts %s dead letters, want 1 (a replayed letter is kept; its replay succeeded)", dlqSize)
	}
	screenshot(t, ctx, "overview")
	do(t, ctx, "held", chromedp.Navigate(s.base+"/held"), chromedp.WaitVisible(chromedp.ID("no-held")))
	screenshot(t, ctx, "held")
	if *updateScreenshots {
		do(t, ctx, "phone", chromedp.EmulateViewport(390, 844), chromedp.Navigate(s.base+"/"), chromedp.WaitVisible(chromedp.ID("tenants")))
		screenshot(t, ctx, "overview-phone")
		do(t, ctx, "desktop", chromedp.EmulateViewport(1280, 900))
	}

	do(t, ctx, "sign out",
		loads(chromedp.Click(chromedp.Search(`//button[text()="Sign out"]`))),
		chromedp.WaitVisible(chromedp.Search(`//p[contains(., "signed out")]`)),
	)
	signIn(t, ctx, s.base, readerUPN)
	do(t, ctx, "a reader's DLQ page", chromedp.Navigate(s.base+"/dlq"), chromedp.WaitVisible(chromedp.ID("dlq-total")))
	controls := value(t, ctx, "replay controls", chromedp.Evaluate[int](`document.querySelectorAll('a[href^="/dlq/replay"], #replay-all').length`))
	csrf := value(t, ctx, "csrf", chromedp.Value(chromedp.CSS("input[name=csrf]")))
	if controls != 0 {
		t.Fatalf("a reader is offered %d replay controls", controls)
	}
	if status := postStatus(t, ctx, "/dlq/replay", "csrf="+csrf+"&upto=1000"); status != http.StatusForbidden {
		t.Fatalf("a reader's replay answered %d, want 403", status)
	}
}
