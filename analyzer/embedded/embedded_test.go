package embedded

import (
	"context"
	"errors"
	"math"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"go.uber.org/zap"
)

// t0 is the simulated start time; every test drives Collect at t0 + i seconds.
var t0 = time.Unix(1_700_000_000, 0).UTC()

func at(sec int) time.Time { return t0.Add(time.Duration(sec) * time.Second) }

// routerMetrics mirrors the router's series: names and labels as DESIGN.md states them.
type routerMetrics struct {
	reg      *prometheus.Registry
	requests *prometheus.CounterVec
	errors   *prometheus.CounterVec
	duration *prometheus.HistogramVec
	inflight *prometheus.GaugeVec
	summary  *prometheus.SummaryVec
}

var routerLabels = []string{"method", "route", "status_code", "cluster"}

func newRouterMetrics(t testing.TB) *routerMetrics {
	t.Helper()
	m := &routerMetrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "http_requests_total", Help: "Requests.",
		}, routerLabels),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "http_errors_total", Help: "Errors.",
		}, routerLabels),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "http_request_duration_seconds", Help: "Latency.",
			Buckets: []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1},
		}, []string{"method", "route", "cluster"}),
		inflight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "http_inflight_requests", Help: "In flight.",
		}, []string{"cluster"}),
		summary: prometheus.NewSummaryVec(prometheus.SummaryOpts{
			Name: "upstream_latency_seconds", Help: "Summary.",
			Objectives: map[float64]float64{0.5: 0.05, 0.99: 0.001},
		}, []string{"cluster"}),
	}
	m.reg.MustRegister(m.requests, m.errors, m.duration, m.inflight, m.summary)
	return m
}

func newStore(t testing.TB, g prometheus.Gatherer, retention time.Duration) *Store {
	t.Helper()
	s, err := New(Options{Gatherer: g, Retention: retention, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func collect(t testing.TB, s *Store, sec int) {
	t.Helper()
	if err := s.Collect(at(sec)); err != nil {
		t.Fatalf("Collect(%d): %v", sec, err)
	}
}

// traffic simulates one second of router traffic:
//   - stable: 20 GET /api 200 per second, latencies 18×0.02 s + 2×0.3 s;
//   - canary: 9 GET /api 200 + 1 GET /api 500 per second (10% errors), latencies
//     100 observations per second: 90×0.02 s, 8×0.3 s, 2×5 s (the 5 s ones land in +Inf);
//   - idle: pre-created children that never see traffic.
func (m *routerMetrics) traffic(sec int) {
	m.requests.WithLabelValues("GET", "/api", "200", "stable").Add(20)
	m.requests.WithLabelValues("GET", "/api", "200", "canary").Add(9)
	m.requests.WithLabelValues("GET", "/api", "500", "canary").Add(1)
	m.errors.WithLabelValues("GET", "/api", "500", "canary").Add(1)
	stable := m.duration.WithLabelValues("GET", "/api", "stable")
	for i := 0; i < 18; i++ {
		stable.Observe(0.02)
	}
	stable.Observe(0.3)
	stable.Observe(0.3)
	canary := m.duration.WithLabelValues("GET", "/api", "canary")
	for i := 0; i < 100; i++ {
		switch {
		case i < 90:
			canary.Observe(0.02)
		case i < 98:
			canary.Observe(0.3)
		default:
			canary.Observe(5)
		}
	}
	m.inflight.WithLabelValues("canary").Set(float64(sec % 7))
	m.summary.WithLabelValues("canary").Observe(0.1)
}

// precreate makes the children that exist before any traffic, as the router does.
func (m *routerMetrics) precreate() {
	for _, c := range []string{"stable", "canary", "idle"} {
		m.requests.WithLabelValues("GET", "/api", "200", c)
		m.errors.WithLabelValues("GET", "/api", "500", c)
		m.duration.WithLabelValues("GET", "/api", c)
	}
	m.requests.WithLabelValues("GET", "/api", "500", "canary")
}

// scalarOf runs q and returns the single value of its one-element vector.
func scalarOf(t *testing.T, s *Store, q string, ts time.Time) float64 {
	t.Helper()
	v, err := s.Query(context.Background(), q, ts)
	if err != nil {
		t.Fatalf("Query(%s): %v", q, err)
	}
	switch v := v.(type) {
	case model.Vector:
		if len(v) != 1 {
			t.Fatalf("Query(%s): want 1 sample, got %d: %v", q, len(v), v)
		}
		return float64(v[0].Value)
	case *model.Scalar:
		return float64(v.Value)
	}
	t.Fatalf("Query(%s): unexpected type %T", q, v)
	return 0
}

func near(a, b float64) bool {
	if a == b {
		return true
	}
	return math.Abs(a-b) <= 1e-9*math.Max(math.Abs(a), math.Abs(b))
}

// simulate feeds 0..secs seconds of traffic; the first collect (second 0) sees the
// pre-created zero-valued children only.
func simulate(t *testing.T, secs int) (*routerMetrics, *Store) {
	t.Helper()
	m := newRouterMetrics(t)
	m.precreate()
	s := newStore(t, m.reg, 0)
	collect(t, s, 0)
	for sec := 1; sec <= secs; sec++ {
		m.traffic(sec)
		collect(t, s, sec)
	}
	return m, s
}

func TestQueriesGiveExactNumbers(t *testing.T) {
	_, s := simulate(t, 120)
	now := at(120)
	for _, tc := range []struct {
		name, q string
		want    float64
	}{
		{"rate", `rate(http_requests_total{cluster="stable"}[1m])`, 20},
		{"increase", `increase(http_requests_total{cluster="stable"}[1m])`, 1200},
		{"increase 2m reaches back to the first sample", `increase(http_requests_total{cluster="stable"}[2m])`, 2400},
		{"sum by", `sum by (cluster) (rate(http_requests_total{cluster="canary"}[1m]))`, 10},
		{"raw counter", `http_requests_total{cluster="canary",status_code="500"}`, 120},
		{"error ratio", `sum(rate(http_errors_total{cluster="canary"}[1m])) / sum(rate(http_requests_total{cluster="canary"}[1m]))`, 0.1},
		{"success ratio via status_code !~", `sum(rate(http_requests_total{cluster="canary",status_code!~"5.."}[1m])) / sum(rate(http_requests_total{cluster="canary"}[1m]))`, 0.9},
		{"matcher =~", `sum(rate(http_requests_total{cluster=~"stab.*|canary"}[1m]))`, 30},
		{"matcher !=", `sum(rate(http_requests_total{cluster!="stable"}[1m]))`, 10},
		{"matcher != keeps idle zero", `sum(rate(http_requests_total{cluster!="stable",cluster!="canary"}[1m]))`, 0},
		{"p95 stable", `histogram_quantile(0.95, sum(rate(http_request_duration_seconds_bucket{cluster="stable"}[1m])) by (le))`, 0.25 + 0.25*(19-18)/2.0},
		{"p50 canary", `histogram_quantile(0.5, sum(rate(http_request_duration_seconds_bucket{cluster="canary"}[1m])) by (le))`, 0.01 + 0.015*50/90},
		{"p95 canary", `histogram_quantile(0.95, sum(rate(http_request_duration_seconds_bucket{cluster="canary"}[1m])) by (le))`, 0.25 + 0.25*(95-90)/8.0},
		// Rank 99 of 100 is in the +Inf bucket: the answer is the highest finite bound.
		// Without the +Inf bucket taken from the count this would be NaN.
		{"p99 canary in +Inf", `histogram_quantile(0.99, sum(rate(http_request_duration_seconds_bucket{cluster="canary"}[1m])) by (le))`, 1},
		{"+Inf bucket equals count", `http_request_duration_seconds_bucket{cluster="canary",le="+Inf"} - ignoring(le) http_request_duration_seconds_count{cluster="canary"}`, 0},
		{"le formatted like Prometheus 3", `http_request_duration_seconds_bucket{cluster="stable",le="1.0"}`, 120 * 20},
		{"le as Prometheus 2 wrote it", `http_request_duration_seconds_bucket{cluster="stable",le="1"}`, 120 * 20},
		{"le != both spellings", `count(http_request_duration_seconds_bucket{cluster="stable",le!="1"})`, 8},
		{"le regex", `count(http_request_duration_seconds_bucket{cluster="stable",le=~"1.0|0.5"})`, 2},
		{"quantile as Prometheus 2 wrote it", `upstream_latency_seconds{cluster="canary",quantile="0.50"}`, 0.1},
		{"mean latency", `sum(rate(http_request_duration_seconds_sum{cluster="stable"}[1m])) / sum(rate(http_request_duration_seconds_count{cluster="stable"}[1m]))`, (18*0.02 + 2*0.3) / 20},
		{"gauge", `http_inflight_requests{cluster="canary"}`, float64(120 % 7)},
		{"max_over_time gauge", `max_over_time(http_inflight_requests{cluster="canary"}[1m])`, 6},
		{"summary quantile", `upstream_latency_seconds{cluster="canary",quantile="0.5"}`, 0.1},
		{"summary count", `upstream_latency_seconds_count{cluster="canary"}`, 120},
		{"count_over_time sees every collect", `count_over_time(http_requests_total{cluster="stable"}[1m])`, 60},
		{"scalar arithmetic", `1 + 2`, 3},
		{"offset", `http_requests_total{cluster="stable"} offset 1m`, 60 * 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := scalarOf(t, s, tc.q, now); !near(got, tc.want) {
				t.Errorf("%s = %v, want %v", tc.q, got, tc.want)
			}
		})
	}
}

func TestNoDataShapes(t *testing.T) {
	_, s := simulate(t, 120)
	ctx := context.Background()

	// Unknown series: an empty, non-nil vector, as the HTTP API client returns.
	for _, q := range []string{
		`rate(http_requests_total{cluster="nope"}[1m])`,
		`no_such_metric`,
		`http_requests_total{cluster="canary",status_code="503"}`,
	} {
		v, err := s.Query(ctx, q, at(120))
		if err != nil {
			t.Fatal(err)
		}
		vec, ok := v.(model.Vector)
		if !ok || vec == nil || len(vec) != 0 {
			t.Errorf("%s: want empty model.Vector, got %T %v", q, v, v)
		}
	}

	// 0/0: pre-created children with no traffic give NaN, not an empty result.
	got := scalarOf(t, s, `sum(rate(http_errors_total{cluster="idle"}[1m])) / sum(rate(http_requests_total{cluster="idle"}[1m]))`, at(120))
	if !math.IsNaN(got) {
		t.Errorf("0/0 = %v, want NaN", got)
	}

	// A range holding fewer than two samples gives an empty vector.
	for _, q := range []string{
		`rate(http_requests_total{cluster="stable"}[1s])`,
		`rate(http_requests_total{cluster="stable"}[500ms])`,
	} {
		v, err := s.Query(ctx, q, at(120))
		if err != nil {
			t.Fatal(err)
		}
		if vec := v.(model.Vector); len(vec) != 0 {
			t.Errorf("%s: want empty, got %v", q, vec)
		}
	}

	// Before the second collect there is one sample: rate is empty, Span is 0.
	m := newRouterMetrics(t)
	m.precreate()
	one := newStore(t, m.reg, 0)
	if one.Span() != 0 {
		t.Errorf("Span before any collect = %v", one.Span())
	}
	collect(t, one, 0)
	if one.Span() != 0 {
		t.Errorf("Span after one collect = %v", one.Span())
	}
	v, err := one.Query(ctx, `rate(http_requests_total[1m])`, at(0))
	if err != nil {
		t.Fatal(err)
	}
	if vec := v.(model.Vector); len(vec) != 0 {
		t.Errorf("rate with one sample: want empty, got %v", vec)
	}
	// Before the first sample's time there is nothing either.
	v, err = s.Query(ctx, `http_requests_total`, at(-10))
	if err != nil {
		t.Fatal(err)
	}
	if vec := v.(model.Vector); len(vec) != 0 {
		t.Errorf("query before any data: want empty, got %v", vec)
	}
}

func TestResultTypes(t *testing.T) {
	_, s := simulate(t, 10)
	ctx := context.Background()
	v, err := s.Query(ctx, `http_requests_total{cluster="stable"}[5s]`, at(10))
	if err != nil {
		t.Fatal(err)
	}
	mat, ok := v.(model.Matrix)
	if !ok || len(mat) != 1 {
		t.Fatalf("want a one-series model.Matrix, got %T %v", v, v)
	}
	var gotVals []float64
	for _, p := range mat[0].Values {
		gotVals = append(gotVals, float64(p.Value))
	}
	if diff := cmp.Diff([]float64{120, 140, 160, 180, 200}, gotVals); diff != "" {
		t.Errorf("matrix values (-want +got):\n%s", diff)
	}
	if got := mat[0].Values[4].Timestamp; got != model.TimeFromUnixNano(at(10).UnixNano()) {
		t.Errorf("last timestamp %v, want %v", got, at(10))
	}
	wantMetric := model.Metric{"__name__": "http_requests_total", "method": "GET", "route": "/api", "status_code": "200", "cluster": "stable"}
	if diff := cmp.Diff(wantMetric, mat[0].Metric); diff != "" {
		t.Errorf("labels (-want +got):\n%s", diff)
	}

	v, err = s.Query(ctx, `scalar(sum(http_requests_total{cluster="stable"}))`, at(10))
	if err != nil {
		t.Fatal(err)
	}
	if sc, ok := v.(*model.Scalar); !ok || sc.Value != 200 {
		t.Errorf("scalar: got %T %v", v, v)
	}
	v, err = s.Query(ctx, `"hello"`, at(10))
	if err != nil {
		t.Fatal(err)
	}
	if str, ok := v.(*model.String); !ok || str.Value != "hello" {
		t.Errorf("string: got %T %v", v, v)
	}

	// sum by keeps the grouping labels and drops the name.
	v, err = s.Query(ctx, `sort(sum by (cluster, status_code) (http_requests_total))`, at(10))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, smp := range v.(model.Vector) {
		got = append(got, smp.Metric.String()+"="+smp.Value.String())
	}
	want := []string{
		`{cluster="idle", status_code="200"}=0`,
		`{cluster="canary", status_code="500"}=10`,
		`{cluster="canary", status_code="200"}=90`,
		`{cluster="stable", status_code="200"}=200`,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("sum by (-want +got):\n%s", diff)
	}

	if _, err := s.Query(ctx, `rate(http_requests_total[1m]`, at(10)); err == nil {
		t.Error("a parse error must be an error")
	}
	if _, err := s.Query(ctx, `http_requests_total + on(nope) group_left http_requests_total`, at(10)); err == nil {
		t.Error("many-to-many matching must be an error")
	}
}

func TestStaleSeriesDisappear(t *testing.T) {
	m, s := simulate(t, 30)
	ctx := context.Background()
	gone := `http_requests_total{cluster="canary",status_code="500"}`
	if got := scalarOf(t, s, gone, at(30)); got != 30 {
		t.Fatalf("before delete: %v", got)
	}
	m.requests.DeleteLabelValues("GET", "/api", "500", "canary")
	collect(t, s, 31)
	// Without a stale marker the 5 m lookback would keep returning 30 until 5 m later.
	for _, ts := range []time.Time{at(31), at(60), at(200)} {
		v, err := s.Query(ctx, gone, ts)
		if err != nil {
			t.Fatal(err)
		}
		if vec := v.(model.Vector); len(vec) != 0 {
			t.Errorf("at %v after delete: want empty, got %v", ts.Sub(t0), vec)
		}
	}
	// At a time before the deletion it is still there.
	if got := scalarOf(t, s, gone, at(30)); got != 30 {
		t.Errorf("history before delete: %v", got)
	}
	// A range over the old samples still sees them (stale markers are skipped).
	if got := scalarOf(t, s, `count_over_time(`+gone+`[10s])`, at(31)); got != 9 {
		t.Errorf("count_over_time over a stale series = %v, want 9", got)
	}
	// The series comes back when the child is created again, starting from zero.
	m.requests.WithLabelValues("GET", "/api", "500", "canary").Add(3)
	collect(t, s, 32)
	if got := scalarOf(t, s, gone, at(32)); got != 3 {
		t.Errorf("after re-create: %v", got)
	}
	// Other series were untouched by the stale marker.
	if got := scalarOf(t, s, `http_requests_total{cluster="stable"}`, at(32)); got != 600 {
		t.Errorf("stable: %v", got)
	}
}

func TestRetentionBoundsMemory(t *testing.T) {
	m := newRouterMetrics(t)
	m.precreate()
	s := newStore(t, m.reg, 30*time.Second)
	const secs = 300
	maxSamples := 0
	for sec := 0; sec <= secs; sec++ {
		m.traffic(sec)
		collect(t, s, sec)
		st := s.Stats()
		maxSamples = max(maxSamples, st.Samples)
	}
	st := s.Stats()
	// Every series holds the last 31 collects (t-30s..t inclusive) plus at most the
	// batch not yet trimmed (< 32 or a quarter of the series).
	perSeries := 31 + 32
	if maxSamples > st.Series*perSeries {
		t.Errorf("peak samples %d > %d series × %d", maxSamples, st.Series, perSeries)
	}
	if got := s.Span(); got != 30*time.Second {
		t.Errorf("Span = %v, want 30s", got)
	}
	// Queries see only what is retained.
	if got := scalarOf(t, s, `count_over_time(http_requests_total{cluster="stable"}[10m])`, at(secs)); got != 31 {
		t.Errorf("count_over_time over 10m with 30s retention = %v, want 31", got)
	}
	// A vanished series is removed entirely once its samples age out.
	before := st.Series
	m.requests.DeleteLabelValues("GET", "/api", "500", "canary")
	for sec := secs + 1; sec <= secs+32; sec++ {
		collect(t, s, sec)
	}
	if got := s.Stats().Series; got != before-1 {
		t.Errorf("series after the deleted one aged out: %d, want %d", got, before-1)
	}
}

func TestSpanGrowsToRetention(t *testing.T) {
	m := newRouterMetrics(t)
	s := newStore(t, m.reg, time.Minute)
	for sec := 0; sec <= 90; sec++ {
		collect(t, s, sec)
		want := time.Duration(min(sec, 60)) * time.Second
		if got := s.Span(); got != want {
			t.Fatalf("after collect at %ds: Span = %v, want %v", sec, got, want)
		}
	}
}

func TestCollectRejectsOutOfOrder(t *testing.T) {
	m := newRouterMetrics(t)
	m.precreate()
	s := newStore(t, m.reg, 0)
	collect(t, s, 10)
	before := s.Stats()
	for _, sec := range []int{10, 9} {
		if err := s.Collect(at(sec)); !errors.Is(err, ErrOutOfOrder) {
			t.Errorf("Collect(%d) after 10: err = %v, want ErrOutOfOrder", sec, err)
		}
	}
	if after := s.Stats(); after != before {
		t.Errorf("a rejected collect changed the store: %+v -> %+v", before, after)
	}
	collect(t, s, 11)
}

type failingGatherer struct{}

func (failingGatherer) Gather() ([]*dto.MetricFamily, error) { return nil, errors.New("boom") }

// switchGatherer fails while failing is set.
type switchGatherer struct {
	g       prometheus.Gatherer
	failing bool
}

func (s *switchGatherer) Gather() ([]*dto.MetricFamily, error) {
	if s.failing {
		return nil, errors.New("boom")
	}
	return s.g.Gather()
}

func TestGatherErrors(t *testing.T) {
	s := newStore(t, failingGatherer{}, 0)
	if err := s.Collect(at(0)); err == nil || !strings.Contains(err.Error(), "boom") {
		t.Errorf("Collect with a failing gatherer: %v", err)
	}

	// A partial gather stores what it got and still reports the error.
	m := newRouterMetrics(t)
	m.precreate()
	s = newStore(t, prometheus.Gatherers{m.reg, failingGatherer{}}, 0)
	if err := s.Collect(at(0)); err == nil {
		t.Error("partial gather: want an error")
	}
	if got := s.Stats().Series; got == 0 {
		t.Error("partial gather stored nothing")
	}

	// A failed gather makes every series stale (no data), as a failed scrape does;
	// the next good gather brings them back.
	sw := &switchGatherer{g: m.reg}
	s = newStore(t, sw, 0)
	collect(t, s, 0)
	q := `http_requests_total{cluster="stable"}`
	if got := scalarOf(t, s, q, at(0)); got != 0 {
		t.Fatalf("before failure: %v", got)
	}
	sw.failing = true
	if err := s.Collect(at(1)); err == nil {
		t.Fatal("failing gather: want an error")
	}
	v, err := s.Query(context.Background(), q, at(1))
	if err != nil {
		t.Fatal(err)
	}
	if vec := v.(model.Vector); len(vec) != 0 {
		t.Errorf("after a failed gather: want empty, got %v", vec)
	}
	sw.failing = false
	m.traffic(2)
	collect(t, s, 2)
	if got := scalarOf(t, s, q, at(2)); got != 20 {
		t.Errorf("after recovery: %v", got)
	}
}

func TestNewValidates(t *testing.T) {
	reg := prometheus.NewRegistry()
	for _, o := range []Options{
		{},
		{Gatherer: reg, Interval: -time.Second},
		{Gatherer: reg, Interval: time.Minute, Retention: time.Second},
	} {
		if _, err := New(o); err == nil {
			t.Errorf("New(%+v): want an error", o)
		}
	}
}

func TestRunGathersUntilCancelled(t *testing.T) {
	m := newRouterMetrics(t)
	m.precreate()
	var mu sync.Mutex
	clock := t0
	now := func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		clock = clock.Add(time.Second)
		return clock
	}
	s, err := New(Options{Gatherer: m.reg, Interval: 5 * time.Millisecond, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	deadline := time.Now().Add(10 * time.Second)
	for s.Span() < 3*time.Second {
		if time.Now().After(deadline) {
			t.Fatal("Run did not collect 4 times within 10s")
		}
		time.Sleep(2 * time.Millisecond)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	if st := s.Stats(); st.Series == 0 {
		t.Error("Run stored no series")
	}
}

// TestConcurrentQueryAndCollect runs queries while collecting; -race checks the
// append-only sharing between Select and Collect's trimming.
func TestConcurrentQueryAndCollect(t *testing.T) {
	m := newRouterMetrics(t)
	m.precreate()
	s := newStore(t, m.reg, 20*time.Second)
	collect(t, s, 0)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	errc := make(chan error, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		q := `histogram_quantile(0.95, sum(rate(http_request_duration_seconds_bucket[10s])) by (le, cluster))`
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := s.Query(context.Background(), q, at(50)); err != nil {
				select {
				case errc <- err:
				default:
				}
				return
			}
		}
	}()
	for sec := 1; sec <= 100; sec++ {
		m.traffic(sec)
		collect(t, s, sec)
	}
	close(stop)
	wg.Wait()
	select {
	case err := <-errc:
		t.Fatal(err)
	default:
	}
	if got := scalarOf(t, s, `sum(increase(http_requests_total{cluster="stable"}[10s]))`, at(100)); !near(got, 200) {
		t.Errorf("increase after concurrent run = %v, want 200", got)
	}
}

// TestLabelQueries covers the label API of the querier (used by some PromQL functions
// and by tooling).
func TestLabelQueries(t *testing.T) {
	_, s := simulate(t, 3)
	q, err := s.Querier(at(0).UnixMilli(), at(3).UnixMilli())
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	mt := mustMatcher(t, "__name__", "http_requests_total")
	vals, _, err := q.LabelValues(context.Background(), "cluster", nil, mt)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"canary", "idle", "stable"}, vals); diff != "" {
		t.Errorf("LabelValues (-want +got):\n%s", diff)
	}
	names, _, err := q.LabelNames(context.Background(), nil, mt)
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(names)
	if diff := cmp.Diff([]string{"__name__", "cluster", "method", "route", "status_code"}, names); diff != "" {
		t.Errorf("LabelNames (-want +got):\n%s", diff)
	}
}

func mustMatcher(t *testing.T, name, value string) *labels.Matcher {
	t.Helper()
	m, err := labels.NewMatcher(labels.MatchEqual, name, value)
	if err != nil {
		t.Fatal(err)
	}
	return m
}
