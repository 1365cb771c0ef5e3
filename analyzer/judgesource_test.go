package analyzer

import (
	"context"
	"strings"
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

// TestJudgeSessionSurvivesRestart: a judge session saved mid-test and restored in a new
// process (its router counters starting again from zero) keeps its evidence and reaches
// the same decision at the same update as a session that never stopped, give or take
// the one interval the reset costs; a record without the judge's state starts over and
// says so.
func TestJudgeSessionSurvivesRestart(t *testing.T) {
	type cluster struct{ reqs, errs *prometheus.CounterVec }
	newRegistry := func() (*prometheus.Registry, cluster) {
		reg := prometheus.NewRegistry()
		c := cluster{
			reqs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "http_requests_total", Help: "t"}, []string{"cluster", "status_code"}),
			errs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "http_errors_total", Help: "t"}, []string{"cluster", "status_code"}),
		}
		reg.MustRegister(c.reqs, c.errs)
		return reg, c
	}
	feed := func(c cluster) {
		for cl, ratio := range map[string]float64{"stable": 0.01, "canary": 0.08} {
			c.reqs.WithLabelValues(cl, "200").Add(300 * (1 - ratio))
			c.reqs.WithLabelValues(cl, "500").Add(300 * ratio)
			c.errs.WithLabelValues(cl, "500").Add(300 * ratio)
		}
	}
	m := model.Metric{Name: "judge", Provider: model.Provider{Judge: &model.JudgeProvider{Signal: "errors"}}}
	decideAt := func(restartAt int, keepState bool) (int, string) {
		reg, c := newRegistry()
		s, err := NewJudgeFactory(reg)(m, "stable", "canary", nil)
		if err != nil {
			t.Fatal(err)
		}
		now := t0
		var msg string
		for i := 0; i < 120; i++ {
			if i == restartAt {
				saved, err := s.Save()
				if err != nil {
					t.Fatal(err)
				}
				if !keepState {
					saved = []byte(`{"startedAt":"` + t0.Format(time.RFC3339) + `"}`)
				}
				reg, c = newRegistry() // the new process's counters start at zero
				if s, err = NewJudgeFactory(reg)(m, "stable", "canary", saved); err != nil {
					t.Fatal(err)
				}
			}
			feed(c)
			now = now.Add(time.Second)
			ms := s.Update(context.Background(), now)
			if i > restartAt && restartAt >= 0 {
				msg = ms.Message
			}
			if ms.Phase.completed() {
				if ms.Phase != MeasurementFailed {
					t.Fatalf("decided %s at %d: %s", ms.Phase, i, ms.Message)
				}
				return i, msg
			}
		}
		t.Fatalf("no decision in 120 updates")
		return 0, ""
	}
	straight, _ := decideAt(-1, true)
	if straight < 4 {
		t.Fatalf("decided at update %d: too early for the restart to fall inside the test", straight)
	}
	restartAt := straight - 2
	resumed, msg := decideAt(restartAt, true)
	if resumed < straight || resumed > straight+2 {
		t.Errorf("resumed session decided at update %d, uninterrupted at %d", resumed, straight)
	}
	if !strings.Contains(msg, "judge resumed after Sluice restarted") {
		t.Errorf("resumed session's message: %q", msg)
	}
	fresh, msg := decideAt(restartAt, false)
	if fresh <= resumed {
		t.Errorf("a session that started over decided at update %d, no later than the resumed one (%d): the saved state made no difference", fresh, resumed)
	}
	if !strings.Contains(msg, "judge started over after Sluice restarted") {
		t.Errorf("restarted session's message: %q", msg)
	}
}
