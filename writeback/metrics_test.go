package writeback_test

import (
	"regexp"
	"slices"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/recoverpasscode/recoverpasscode/writeback"
)

// recorder is a Registerer that records the names of what is registered.
type recorder struct{ names []string }

var descName = regexp.MustCompile(`fqName: "([^"]+)"`)

func (r *recorder) Register(c prometheus.Collector) error {
	ch := make(chan *prometheus.Desc, 16)
	go func() { c.Describe(ch); close(ch) }()
	for d := range ch {
		if m := descName.FindStringSubmatch(d.String()); m != nil {
			r.names = append(r.names, m[1])
		}
	}
	return nil
}

func (r *recorder) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		_ = r.Register(c)
	}
}

func (r *recorder) Unregister(prometheus.Collector) bool { return false }

// TestMetricNames: MetricNames, which deploy's alerts are checked against,
// is exactly what a Deliverer registers.
func TestMetricNames(t *testing.T) {
	h := newHarness(t)
	rec := &recorder{}
	cfg := testConfig(writeback.Source{Name: "ticketing", Jira: &writeback.Jira{Site: "https://example.atlassian.net", Bearer: "token-0123"}})
	cfg.Registerer = rec
	if _, err := writeback.New(h.js, cfg); err != nil {
		t.Fatal(err)
	}
	got, want := slices.Sorted(slices.Values(rec.names)), slices.Sorted(slices.Values(writeback.MetricNames))
	if !slices.Equal(got, want) {
		t.Errorf("registered %v, MetricNames %v", got, want)
	}
}
