package deploy

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// metricName finds metric names in PromQL.
var metricName = regexp.MustCompile(`\brecoverpasscode_[a-z_]+`)

// unknownMetrics lists the metrics expr uses that neither the worker nor
// the write-back exports; a histogram's _bucket, _sum and _count series
// count as the histogram.
func unknownMetrics(expr string) []string {
	var unknown []string
	for _, name := range metricName.FindAllString(expr, -1) {
		base := name
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			base = strings.TrimSuffix(base, suffix)
		}
		if !workerMetrics[name] && !workerMetrics[base] && !deliveryMetrics[name] && !deliveryMetrics[base] {
			unknown = append(unknown, name)
		}
	}
	return unknown
}

type alertRule struct {
	Alert       string            `yaml:"alert"`
	Expr        string            `yaml:"expr"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

func TestAlertRules(t *testing.T) {
	path := filepath.Join("prometheus", "alerts.yaml")
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var file struct {
		Groups []struct {
			Name  string      `yaml:"name"`
			Rules []alertRule `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(raw, &file); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, g := range file.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" || seen[r.Alert] {
				t.Errorf("rule %q: every rule is an alert with a unique name", r.Alert)
			}
			seen[r.Alert] = true
			if !setOf("critical", "warning", "info")[r.Labels["severity"]] {
				t.Errorf("%s: severity %q, want critical, warning or info", r.Alert, r.Labels["severity"])
			}
			if r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
				t.Errorf("%s: a summary and a description (what it means, what to do) are required", r.Alert)
			}
			if u := unknownMetrics(r.Expr); len(u) > 0 || !metricName.MatchString(r.Expr) {
				t.Errorf("%s: expression uses no or unknown metrics %v", r.Alert, u)
			}
		}
	}
	if len(seen) == 0 {
		t.Fatal("no alert found")
	}
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	for name := range seen {
		if !strings.Contains(string(readme), name) {
			t.Errorf("README.md does not explain %s", name)
		}
	}

	promtool(t, "check", "rules", path)
	promtool(t, "test", "rules", filepath.Join("prometheus", "alerts_test.yaml"))
}

// dashboardExprs collects the query of every panel, rows' panels included.
func dashboardExprs(panels []any) []string {
	var exprs []string
	for _, p := range panels {
		targets, _ := dig(p, "targets").([]any)
		for _, target := range targets {
			if e := str(target, "expr"); e != "" {
				exprs = append(exprs, e)
			}
		}
		nested, _ := dig(p, "panels").([]any)
		exprs = append(exprs, dashboardExprs(nested)...)
	}
	return exprs
}

func TestDashboard(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("grafana", "recoverpasscode.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash map[string]any
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatal(err)
	}
	if str(dash, "uid") == "" || str(dash, "title") == "" {
		t.Error("a dashboard needs a uid and a title")
	}
	panels, _ := dig(dash, "panels").([]any)
	exprs := dashboardExprs(panels)
	used := map[string]bool{}
	for _, e := range exprs {
		if u := unknownMetrics(e); len(u) > 0 {
			t.Errorf("query %q uses unknown metrics %v", e, u)
		}
		for _, name := range metricName.FindAllString(e, -1) {
			used[strings.TrimSuffix(name, "_bucket")] = true
		}
	}
	for name := range workerMetrics {
		if !used[name] {
			t.Errorf("no panel shows %s", name)
		}
	}

	// promtool parses PromQL only in rule files: check each query as the
	// expression of a recording rule, with Grafana's variables filled in.
	fill := strings.NewReplacer("$__rate_interval", "5m", "$source", ".*")
	var rules []map[string]string
	for i, e := range exprs {
		rules = append(rules, map[string]string{"record": fmt.Sprintf("dashboard:query_%d", i), "expr": fill.Replace(e)})
	}
	out, err := yaml.Marshal(map[string]any{"groups": []any{map[string]any{"name": "dashboard", "rules": rules}}})
	if err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(t.TempDir(), "dashboard-queries.yaml")
	if err := os.WriteFile(tmp, out, 0o600); err != nil {
		t.Fatal(err)
	}
	promtool(t, "check", "rules", tmp)
}

// promtool runs Prometheus's own checker when it is installed (Debian:
// apt-get install prometheus) and skips that part otherwise.
func promtool(t *testing.T, args ...string) {
	t.Helper()
	bin, err := exec.LookPath("promtool")
	if err != nil {
		t.Logf("promtool not installed: skipped promtool %s", strings.Join(args, " "))
		return
	}
	if out, err := exec.Command(bin, args...).CombinedOutput(); err != nil {
		t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}
