package console

import (
	"bytes"
	"testing"

	"github.com/recoverpasscode/recoverpasscode/dlq"
	"github.com/recoverpasscode/recoverpasscode/quota"
	"github.com/recoverpasscode/recoverpasscode/wire"
)

// TestEveryPageRenders executes each template with empty and with sample
// data, as an operator and as a reader, so a template mistake fails here
// rather than as a 500 in the browser.
func TestEveryPageRenders(t *testing.T) {
	res := wire.Result{JobID: "j1", Source: "batch", Status: wire.Failed, TenantID: "33333333-3333-4333-8333-333333333333", ManagedDeviceID: "2d6a3d0e-8f5c-4d7a-9b1e-000000000001", Graph: &wire.GraphOutcome{Status: 404}}
	letter := dlq.Letter{Seq: 7, DeadLetter: wire.DeadLetter{JobID: "j1", Source: "batch", Result: &res}}
	data := map[string][]any{
		"overview": {overviewData{}, overviewData{Minutes: make([]minute, throughputMinutes)}},
		"jobs":     {jobsData{Windows: windows}, jobsData{Windows: windows, Results: []wire.Result{res}, Next: "/jobs?before=3"}},
		"job":      {jobData{ID: "j1"}, jobData{ID: "j1", Result: &res, Events: []wire.AuditEvent{{Kind: wire.KindGraphCall, Graph: res.Graph}}}},
		"batches":  {[]batchRef(nil), []batchRef{{Source: "batch", Name: "b", Results: 3}}},
		"batch":    {batchData{}, batchData{Source: "batch", Name: "b", Queued: 2, Failures: []wire.Result{res}}},
		"dlq":      {dlqData{}, dlqData{Total: 1, Letters: []dlq.Letter{letter}}},
		"confirm":  {confirmData{}, confirmData{Plan: dlq.PlanReplays(wire.Names{}, []dlq.Letter{letter}, dlq.Options{}), UpTo: 7}},
		"replayed": {confirmData{Done: true}, confirmData{Done: true, Published: 1, Plan: dlq.Plan{Replays: []dlq.Replay{{From: letter}}}}},
		"device":   {deviceData{}, deviceData{TenantID: res.TenantID, DeviceID: res.ManagedDeviceID, Indexed: true, Events: []wire.AuditEvent{{Kind: wire.KindDecision}}}},
		"held": {struct {
			Source string
			Jobs   []quota.Held
		}{}, struct {
			Source string
			Jobs   []quota.Held
		}{"automation", []quota.Held{{JobID: "j2", Source: "automation"}}}},
	}
	for name := range pages {
		if name != "message" && data[name] == nil {
			t.Errorf("page %s has no test data", name)
		}
	}
	s := &sealer{}
	_ = s
	for name, samples := range data {
		for _, sess := range []*session{{UPN: "op", Roles: []string{RoleOperate}}, {UPN: "rd", Roles: []string{RoleRead}}} {
			for i, d := range samples {
				var buf bytes.Buffer
				v := view{Title: name, Nav: name, Session: sess, CSRF: "tok", CanAct: sess.canOperate(), Data: d}
				if err := pages[name].ExecuteTemplate(&buf, "layout.html", v); err != nil {
					t.Errorf("%s sample %d as %s: %v", name, i, sess.UPN, err)
				}
			}
		}
	}
}
