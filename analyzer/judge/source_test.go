package judge_test

import (
	"context"
	"testing"
	"time"

	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/client_golang/prometheus"
	pmodel "github.com/prometheus/common/model"

	"github.com/sluice-mesh/sluice/analyzer/judge"
)

func routerRegistry(t *testing.T) (*prometheus.Registry, *prometheus.CounterVec, *prometheus.CounterVec, *prometheus.HistogramVec) {
	t.Helper()
	reg := prometheus.NewRegistry()
	labels := []string{"method", "route", "status_code", "cluster"}
	req := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "http_requests_total", Help: "h"}, labels)
	errs := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "http_errors_total", Help: "h"}, labels)
	dur := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "http_request_duration_seconds", Help: "h",
		Buckets: []float64{0.05, 0.1, 0.5}}, labels)
	reg.MustRegister(req, errs, dur)
	return reg, req, errs, dur
}

func TestGathererSource(t *testing.T) {
	reg, req, errs, dur := routerRegistry(t)
	req.WithLabelValues("GET", "r1", "200", "canary").Add(90)
	req.WithLabelValues("POST", "r2", "503", "canary").Add(7)
	req.WithLabelValues("GET", "r1", "404", "canary").Add(3)
	req.WithLabelValues("GET", "r1", "200", "stable").Add(1000)
	errs.WithLabelValues("POST", "r2", "503", "canary").Add(7)
	errs.WithLabelValues("GET", "r1", "404", "canary").Add(3) // 4xx: not the service's fault
	for _, v := range []float64{0.01, 0.07, 0.07, 0.3, 2} {
		dur.WithLabelValues("GET", "r1", "200", "canary").Observe(v)
	}
	dur.WithLabelValues("POST", "r2", "503", "canary").Observe(0.2)
	st, err := judge.GathererSource(reg).Stats(context.Background(), "canary")
	if err != nil {
		t.Fatal(err)
	}
	if st.Requests != 100 || st.Errors != 7 {
		t.Fatalf("requests %v errors %v, want 100 and 7 (5xx only)", st.Requests, st.Errors)
	}
	h := st.Latency
	want := []float64{1, 3, 5}
	if len(h.Bounds) != 3 || h.Count != 6 {
		t.Fatalf("histogram %+v", h)
	}
	for i := range want {
		if h.Counts[i] != want[i] {
			t.Fatalf("histogram counts %v, want %v", h.Counts, want)
		}
	}
	if q := h.Quantile(0.5); q < 0.05 || q > 0.1 {
		t.Fatalf("median %v, want within (0.05, 0.1]", q)
	}
	none, err := judge.GathererSource(reg).Stats(context.Background(), "nobody")
	if err != nil || none.Requests != 0 || none.Latency.Count != 0 {
		t.Fatalf("unknown cluster: %+v %v", none, err)
	}
}

type fakeProm map[string]pmodel.Value

func (f fakeProm) Query(_ context.Context, q string, _ time.Time, _ ...v1.Option) (pmodel.Value, v1.Warnings, v1.Infos, error) {
	if v, ok := f[q]; ok {
		return v, nil, nil, nil
	}
	return pmodel.Vector{}, nil, nil, nil
}

func TestPrometheusSource(t *testing.T) {
	sample := func(v float64, le string) *pmodel.Sample {
		m := pmodel.Metric{}
		if le != "" {
			m["le"] = pmodel.LabelValue(le)
		}
		return &pmodel.Sample{Metric: m, Value: pmodel.SampleValue(v)}
	}
	f := fakeProm{
		`sum(envoy_cluster_upstream_rq_total{envoy_cluster_name="canary"})`: pmodel.Vector{sample(500, "")},
		`sum by (le) (envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name="canary"})`: pmodel.Vector{
			sample(480, "+Inf"), sample(100, "25"), sample(400, "100"), sample(470, "1000")},
	}
	st, err := judge.PrometheusSource(f).Stats(context.Background(), "canary")
	if err != nil {
		t.Fatal(err)
	}
	if st.Requests != 500 || st.Errors != 0 || st.Latency.Count != 480 {
		t.Fatalf("stats %+v", st)
	}
	if st.Latency.Bounds[0] != 0.025 || st.Latency.Bounds[2] != 1 || st.Latency.Counts[1] != 400 {
		t.Fatalf("histogram not converted from ms to s: %+v", st.Latency)
	}
}

// serveSecond counts a second of 100 requests to each cluster the way the router would,
// with stableErrors and canaryErrors of them answered 500.
func serveSecond(req, errs *prometheus.CounterVec, stableErrors, canaryErrors float64) {
	for cluster, e := range map[string]float64{"stable": stableErrors, "canary": canaryErrors} {
		req.WithLabelValues("GET", "r", "200", cluster).Add(100 - e)
		req.WithLabelValues("GET", "r", "500", cluster).Add(e)
		errs.WithLabelValues("GET", "r", "500", cluster).Add(e)
	}
}

// TestTrackerFailsBadCanary drives a Tracker over a registry the way the router fills it.
func TestTrackerFailsBadCanary(t *testing.T) {
	reg, req, errs, _ := routerRegistry(t)
	tr := judge.NewTracker(judge.Config{}, judge.GathererSource(reg), "stable", "canary")
	ctx := context.Background()
	r, err := tr.Step(ctx, t0)
	if err != nil || r.Decision != judge.NotEnoughData {
		t.Fatalf("first step: %+v %v", r, err)
	}
	for i := 1; i <= 60; i++ {
		serveSecond(req, errs, 1, 10)
		r, err = tr.Step(ctx, t0.Add(time.Duration(i)*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		if r.Decision.Final() {
			break
		}
	}
	if r.Decision != judge.Fail || r.Bound <= 1.2 {
		t.Fatalf("10%% vs 1%% errors: %s bound %.2f: %s", r.Decision, r.Bound, r.Message)
	}
	if e := r.Details["elapsedSeconds"]; e > 10 {
		t.Fatalf("took %v s", e)
	}
}
