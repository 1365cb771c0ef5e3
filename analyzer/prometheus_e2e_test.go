package analyzer

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sluice-mesh/sluice/internal/testenv"
	"github.com/sluice-mesh/sluice/model"
)

// TestRemotePrometheusProvider runs Debian's real Prometheus scraping a tiny exporter
// every second and measures through the provider: Successful, Failed, LowTraffic, and
// Error once Prometheus is down (an outage is never Successful).
func TestRemotePrometheusProvider(t *testing.T) {
	reg := prometheus.NewRegistry()
	ratio := prometheus.NewGauge(prometheus.GaugeOpts{Name: "sluice_test_error_ratio", Help: "test"})
	reqs := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "http_requests_total", Help: "test"}, []string{"cluster"})
	reg.MustRegister(ratio, reqs)
	ratio.Set(0.01)
	metricsHandler := promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
	exporter := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reqs.WithLabelValues("stable").Add(90) // traffic grows by one step per scrape
		reqs.WithLabelValues("canary").Add(10)
		metricsHandler.ServeHTTP(w, r)
	}))
	defer exporter.Close()
	prom := testenv.StartPrometheus(t, time.Second, strings.TrimPrefix(exporter.URL, "http://"))

	pm := &ProviderMeasurer{}
	ro := canary()
	measure := func(cond string, minReq int) Measurement {
		m := model.Metric{Name: "error-ratio", Interval: 10 * time.Second, SuccessCondition: cond,
			Provider: model.Provider{Prometheus: &model.PrometheusProvider{Address: prom.URL,
				Query: "sluice_test_error_ratio", Timeout: 2 * time.Second}}}
		return pm.Measure(context.Background(), MeasureRequest{Rollout: ro, Stable: "stable", Canary: "canary",
			Kind: KindInline, Metric: m, MinRequests: minReq, Now: time.Now()})
	}
	var ms Measurement
	testenv.WaitFor(t, 30*time.Second, "a Successful measurement once Prometheus has scraped", func() bool {
		ms = measure("result[0] < 0.05", 20)
		return ms.Phase == MeasurementSuccessful
	})
	if ms.Value != "[0.01]" || len(ms.Values) != 1 {
		t.Fatalf("value %q %v", ms.Value, ms.Values)
	}
	if ms = measure("result[0] < 0.05", 1e9); ms.Phase != MeasurementLowTraffic {
		t.Fatalf("min requests not enforced: %+v", ms)
	}
	ratio.Set(0.2)
	testenv.WaitFor(t, 10*time.Second, "a Failed measurement after the error ratio rose", func() bool {
		ms = measure("result[0] < 0.05", 20)
		return ms.Phase == MeasurementFailed
	})
	if ms = measure("result[0] < 0.05 && isNaN(result[0]) == false", 0); ms.Phase != MeasurementFailed {
		t.Fatalf("%+v", ms)
	}
	// A query with no series is no data: indexing it is an Error (as in Argo), and a
	// condition that would pass on it is Inconclusive, never a pass.
	m := model.Metric{Name: "none", SuccessCondition: "result[0] < 0.05",
		Provider: model.Provider{Prometheus: &model.PrometheusProvider{Address: prom.URL, Query: "does_not_exist"}}}
	if ms = pm.Measure(context.Background(), MeasureRequest{Rollout: ro, Stable: "stable", Canary: "canary", Metric: m, Now: time.Now()}); ms.Phase != MeasurementError {
		t.Fatalf("no data indexed: %+v", ms)
	}
	m.SuccessCondition = "all(result, {# < 0.05})"
	if ms = pm.Measure(context.Background(), MeasureRequest{Rollout: ro, Stable: "stable", Canary: "canary", Metric: m, Now: time.Now()}); ms.Phase != MeasurementInconclusive {
		t.Fatalf("no data: %+v", ms)
	}
	prom.Stop()
	ratio.Set(0.01)
	if ms = measure("result[0] < 0.05", 0); ms.Phase != MeasurementError {
		t.Fatalf("outage must be Error: %+v", ms)
	}
	if ms = measure("result[0] < 0.05", 20); ms.Phase != MeasurementError {
		t.Fatalf("outage with min requests must be Error: %+v", ms)
	}
}
