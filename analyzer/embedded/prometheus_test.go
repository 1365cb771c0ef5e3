package embedded

import (
	"context"
	"math"
	"net/http/httptest"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/api"
	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"go.uber.org/zap"

	"github.com/sluice-mesh/sluice/internal/testenv"
)

// TestMatchesRealPrometheus scrapes the same registry with a real Prometheus server and
// the embedded Store and checks that the queries an AnalysisTemplate would run give the
// same answers. Traffic is applied before the comparison and then stops, so the answers
// do not depend on when either side sampled.
func TestMatchesRealPrometheus(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Prometheus server")
	}
	m := newRouterMetrics(t)
	m.precreate()
	srv := httptest.NewServer(promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
	defer srv.Close()
	prom := testenv.StartPrometheus(t, time.Second, strings.TrimPrefix(srv.URL, "http://"))
	client, err := api.NewClient(api.Config{Address: prom.URL})
	if err != nil {
		t.Fatal(err)
	}
	remote := v1.NewAPI(client)

	s, err := New(Options{Gatherer: m.reg, Interval: 200 * time.Millisecond, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	for sec := 1; sec <= 5; sec++ {
		m.traffic(sec)
	}
	// Both sides must hold at least 3 s of the final, constant values (so rate over
	// [3s] is over unchanged samples on both).
	settled := `count_over_time(http_requests_total{cluster="stable"}[3s]) >= 2 and changes(http_requests_total{cluster="stable"}[3s]) == 0 and http_requests_total{cluster="stable"} == 100`
	testenv.WaitFor(t, 30*time.Second, "both stores to hold 3s of settled data", func() bool {
		now := time.Now()
		r, _, _, err := remote.Query(ctx, settled, now)
		if err != nil || len(r.(model.Vector)) != 1 {
			return false
		}
		e, err := s.Query(ctx, settled, now)
		return err == nil && len(e.(model.Vector)) == 1
	})

	now := time.Now()
	for _, q := range []string{
		`{__name__=~"http_.*|upstream_.*"}`,
		`histogram_quantile(0.95, sum by (le) (http_request_duration_seconds_bucket{cluster="canary"}))`,
		`histogram_quantile(0.99, sum by (le, cluster) (http_request_duration_seconds_bucket))`,
		`histogram_quantile(0.5, sum by (le, cluster) (http_request_duration_seconds_bucket))`,
		`sum(http_errors_total{cluster="canary"}) / sum(http_requests_total{cluster="canary"})`,
		`sum by (cluster, status_code) (http_requests_total{status_code!="200"})`,
		`sum(http_request_duration_seconds_sum) by (cluster) / sum(http_request_duration_seconds_count) by (cluster)`,
		`sum by (cluster) (rate(http_requests_total[3s]))`,
		`sum(rate(http_errors_total{cluster="idle"}[3s])) / sum(rate(http_requests_total{cluster="idle"}[3s]))`,
		`http_request_duration_seconds_bucket{cluster="stable",le="1"}`,
		`http_request_duration_seconds_bucket{cluster="stable",le="+Inf"}`,
		`upstream_latency_seconds{quantile="0.99"}`,
		`http_requests_total{cluster="nope"}`,
	} {
		compareQuery(t, remote, s, q, now)
	}

	// A deleted child disappears from both at once (stale marker), not after 5 minutes.
	m.requests.DeleteLabelValues("GET", "/api", "500", "canary")
	gone := `http_requests_total{status_code="500"}`
	testenv.WaitFor(t, 30*time.Second, "the deleted series to go stale in Prometheus", func() bool {
		r, _, _, err := remote.Query(ctx, gone, time.Now())
		return err == nil && len(r.(model.Vector)) == 0
	})
	compareQuery(t, remote, s, gone, time.Now())
}

func compareQuery(t *testing.T, remote v1.API, s *Store, q string, ts time.Time) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, _, _, err := remote.Query(ctx, q, ts)
	if err != nil {
		t.Fatalf("prometheus %s: %v", q, err)
	}
	e, err := s.Query(ctx, q, ts)
	if err != nil {
		t.Fatalf("embedded %s: %v", q, err)
	}
	want, got := canonical(t, r), canonical(t, e)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("%s (-prometheus +embedded):\n%s", q, diff)
	}
}

// canonical renders a vector as sorted "labels value" lines, without the labels only a
// scrape adds (job, instance) and with le/quantile spelled one way (Prometheus 2 wrote
// le="1", Prometheus 3 and the Store write le="1.0").
func canonical(t *testing.T, v model.Value) []string {
	t.Helper()
	vec, ok := v.(model.Vector)
	if !ok {
		t.Fatalf("want a vector, got %T", v)
	}
	out := []string{}
	for _, smp := range vec {
		m := smp.Metric.Clone()
		delete(m, "job")
		delete(m, "instance")
		for _, n := range []model.LabelName{model.BucketLabel, model.QuantileLabel} {
			if s, ok := m[n]; ok {
				if f, err := strconv.ParseFloat(string(s), 64); err == nil {
					m[n] = model.LabelValue(labels.FormatOpenMetricsFloat(f))
				}
			}
		}
		val := strconv.FormatFloat(float64(smp.Value), 'g', 12, 64)
		if math.IsNaN(float64(smp.Value)) {
			val = "NaN"
		}
		out = append(out, m.String()+" "+val)
	}
	sort.Strings(out)
	return out
}
