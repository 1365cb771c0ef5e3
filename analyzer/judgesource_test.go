package analyzer

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-mesh/sluice/model"
)

// TestJudgeOverRouterSeries runs the judge through the factory over router-shaped
// series in a registry: a canary with 10x the stable's error rate fails, an
// equal one passes (or keeps running), and neither decides before it has data.
func TestJudgeOverRouterSeries(t *testing.T) {
	for _, c := range []struct {
		name      string
		canaryErr float64
		want      MeasurementPhase
	}{
		{"bad canary", 0.10, MeasurementFailed},
		// An equal canary must not fail; the judge may take long to pass it.
		{"good canary", 0.01, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			reqs := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "http_requests_total", Help: "t"}, []string{"cluster", "status_code"})
			errs := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "http_errors_total", Help: "t"}, []string{"cluster", "status_code"})
			reg.MustRegister(reqs, errs)
			now := t0
			second := func() {
				for cl, ratio := range map[string]float64{"stable": 0.01, "canary": c.canaryErr} {
					reqs.WithLabelValues(cl, "200").Add(500 * (1 - ratio))
					reqs.WithLabelValues(cl, "500").Add(500 * ratio)
					errs.WithLabelValues(cl, "500").Add(500 * ratio)
				}
				now = now.Add(time.Second)
			}
			second()
			f := NewJudgeFactory(reg)
			m := model.Metric{Name: "judge", Provider: model.Provider{Judge: &model.JudgeProvider{Signal: "errors"}}}
			s, err := f(m, "stable", "canary", nil)
			if err != nil {
				t.Fatal(err)
			}
			if ms := s.Update(context.Background(), now); ms.Phase.completed() {
				t.Fatalf("first update %+v", ms)
			}
			var ms Measurement
			for i := 0; i < 60; i++ {
				second()
				ms = s.Update(context.Background(), now)
				if ms.Phase.completed() {
					break
				}
			}
			if c.want == "" {
				if ms.Phase == MeasurementFailed || ms.Phase == MeasurementError {
					t.Fatalf("equal canary: %s (%s)", ms.Phase, ms.Message)
				}
				return
			}
			if ms.Phase != c.want {
				t.Fatalf("after %s: %s (%s) details %v", now.Sub(t0), ms.Phase, ms.Message, ms.Details)
			}
		})
	}
}
