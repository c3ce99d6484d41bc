package deploy

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/recoverpasscode/recoverpasscode/graph/graphsim"
	"github.com/recoverpasscode/recoverpasscode/internal/testsystem"
	"github.com/recoverpasscode/recoverpasscode/quota"
	"github.com/recoverpasscode/recoverpasscode/ratelimit"
	"github.com/recoverpasscode/recoverpasscode/service"
)

// TestOperatorReleasesHeldJobs runs `enqueue held list` and `enqueue held
// release` as the operator against nats/dev.conf, with a real worker
// holding the second job of source automation (budget 1/1h): the operator
// sees it and releases it, without one refusal, and it is recovered.
func TestOperatorReleasesHeldJobs(t *testing.T) {
	passwords := setPasswords(t)
	enqueue := buildEnqueue(t)
	url := startFromConfig(t, filepath.Join("nats", "dev.conf"), nil).ClientURL()
	sys := testsystem.Start(t, graphsim.Config{Limit: -1})
	logs := startWorkerWith(t, sys, url, passwords["worker"], func(c *service.Config) {
		c.SourceLimits = quota.Limits{"automation": ratelimit.Rate{N: 1, Per: time.Hour}}
	})
	as := func(user string, args ...string) run {
		env := []string{"NATS_PASSWORD=" + passwords[user], "NATS_INBOX_PREFIX=" + inboxPrefix(user)}
		return enqueue(t, env, append(args, "--nats-url", url, "--nats-user", user)...)
	}
	for _, device := range []string{testsystem.DeviceN(31), testsystem.DeviceN(32)} {
		if r := as("automation", "--device", device, "--source", "automation"); r.code != 0 {
			t.Fatalf("submit as automation: %s", r)
		}
	}
	var list run
	if !testsystem.Eventually(20*time.Second, func() bool {
		list = as("operator", "held", "list")
		return strings.Contains(list.stdout, "1 held job(s)")
	}) {
		t.Fatalf("held list as operator: %s", list)
	}
	if !strings.Contains(list.stdout, testsystem.DeviceN(32)) && !strings.Contains(list.stdout, testsystem.DeviceN(31)) {
		t.Errorf("held list names neither device: %s", list)
	}
	if r := as("operator", "held", "release", "--source", "automation", "--by", "oncall"); r.code != 0 || !strings.Contains(r.stdout, "1 job(s) released") {
		t.Fatalf("held release as operator: %s", r)
	}
	if !testsystem.Eventually(30*time.Second, func() bool {
		return sys.GS.Performed(testsystem.DeviceN(31)) == 1 && sys.GS.Performed(testsystem.DeviceN(32)) == 1
	}) {
		t.Fatal("the released job was not recovered")
	}
	if r := as("operator", "held", "list"); !strings.Contains(r.stdout, "no held jobs") {
		t.Errorf("held list after the release: %s", r)
	}
	expectNoWorkerDenials(t, logs)
	if l := logs.String(); strings.Contains(l, "could not write the source budgets") {
		t.Errorf("the worker could not announce its budgets as its NATS user:\n%s", l)
	}
}
