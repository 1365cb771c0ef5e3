package analyzer

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-mesh/sluice/analyzer/embedded"
	"github.com/sluice-mesh/sluice/internal/testenv"
	"github.com/sluice-mesh/sluice/model"
)

// traffic feeds router-shaped series into a registry: per fake second, stable and canary
// requests with a canary error ratio.
type traffic struct {
	reqs, errs *prometheus.CounterVec
}

func newTraffic(reg *prometheus.Registry) *traffic {
	tr := &traffic{
		reqs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "http_requests_total", Help: "t"}, []string{"cluster", "status_code"}),
		errs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "http_errors_total", Help: "t"}, []string{"cluster", "status_code"}),
	}
	reg.MustRegister(tr.reqs, tr.errs)
	for _, c := range []string{"stable", "canary"} { // pre-create: an absent series is no data
		tr.reqs.WithLabelValues(c, "200")
		tr.errs.WithLabelValues(c, "500")
	}
	return tr
}

func (tr *traffic) second(stable, canary int, canaryErrRatio float64) {
	tr.reqs.WithLabelValues("stable", "200").Add(float64(stable))
	bad := float64(canary) * canaryErrRatio
	tr.reqs.WithLabelValues("canary", "200").Add(float64(canary) - bad)
	tr.reqs.WithLabelValues("canary", "500").Add(bad)
	tr.errs.WithLabelValues("canary", "500").Add(bad)
}

// embeddedRun starts a Controller over the embedded PromQL store with the analysis the
// foundation example uses, and drives fake time second by second.
func embeddedRun(t *testing.T, canaryPerSec int, errRatio float64, seconds int, done func(RolloutStatus) bool) RolloutStatus {
	t.Helper()
	reg := prometheus.NewRegistry()
	tr := newTraffic(reg)
	clock := &fakeClock{now: t0}
	store, err := embedded.New(embedded.Options{Gatherer: reg, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	tick := func() {
		tr.second(90, canaryPerSec, errRatio)
		clock.Advance(time.Second)
		if err := store.Collect(clock.Now()); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 35; i++ { // one full window of data before anything is measured
		tick()
	}
	m := model.Metric{Name: "error-rate", Interval: 10 * time.Second, Count: 2, ConsecutiveErrorLimit: 4,
		SuccessCondition: "result[0] < 0.02",
		Provider:         model.Provider{Prometheus: &model.PrometheusProvider{Query: `sum(rate(http_errors_total{cluster="canary"}[30s])) / sum(rate(http_requests_total{cluster="canary"}[30s]))`}}}
	cfg := testConfig(weightStep(20), analysisStep(m), weightStep(50), analysisStep(m))
	cfg.ControlPlane.MinRequests = 50
	plane := &fakePlane{}
	c, err := NewController(cfg, Options{Clock: clock, DataPlanes: []DataPlane{plane}, Embedded: store})
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, c: c, clock: clock, plane: plane}
	runCtx(t, c)
	var st RolloutStatus
	for i := 0; i < seconds; i++ {
		now := clock.Now()
		// Let the controller catch up with this second: its loop and the measurements.
		testenv.WaitFor(t, 5*time.Second, "controller tick", func() bool {
			c.poke() // the loop may be waiting on a fake timer set before this second
			st, _ = c.Get("app")
			return !st.UpdatedAt.Before(now) && !inFlight(c)
		})
		if done(st) {
			return st
		}
		tick()
	}
	st, _ = h.c.Get("app")
	return st
}

// inFlight reports whether the controller has inputs queued or a measurement on its way
// (asked of the decision goroutine, so the answer is consistent).
func inFlight(c *Controller) bool {
	busy := true
	if err := c.do(func() error {
		c.inboxMu.Lock()
		busy = len(c.inbox) > 0
		c.inboxMu.Unlock()
		for _, st := range c.states {
			for _, r := range st.Runs {
				for _, m := range r.Metrics {
					busy = busy || m.InFlight
				}
			}
		}
		return nil
	}); err != nil {
		return true
	}
	return busy
}

func TestEmbeddedHealthyCanaryWalksToHealthy(t *testing.T) {
	st := embeddedRun(t, 40, 0.005, 120, func(s RolloutStatus) bool { return s.Phase == PhaseHealthy })
	if st.Phase != PhaseHealthy || st.ActualWeight != 100 || len(st.AnalysisRuns) != 2 {
		t.Fatalf("%+v", st)
	}
	for _, r := range st.AnalysisRuns {
		if r.Phase != MeasurementSuccessful || r.Metrics[0].Successful != 2 || r.Metrics[0].Provider != "prometheus(embedded)" {
			t.Fatalf("run %+v", r)
		}
	}
}

func TestEmbeddedFailingCanaryAbortsAtFirstMeasurement(t *testing.T) {
	st := embeddedRun(t, 40, 0.05, 60, func(s RolloutStatus) bool { return s.Aborted && s.ActualWeight == 0 })
	if !st.Aborted || st.ActualWeight != 0 || st.AbortLatencySeconds == nil {
		t.Fatalf("%+v", st)
	}
	mt := st.AnalysisRuns[0].Metrics[0]
	if mt.Failed != 1 || mt.Count != 1 || len(mt.Measurements) != 1 || mt.Measurements[0].Values[0] < 0.04 {
		t.Fatalf("aborted after %+v", mt)
	}
	// Ordering only (no time limit here: figures belong in bench/): the zero weight was
	// applied after the failing measurement finished.
	if *st.AbortLatencySeconds < 0 || st.AbortCause != AbortByAnalysis {
		t.Fatalf("abort latency %v s, cause %q", *st.AbortLatencySeconds, st.AbortCause)
	}
}

func TestEmbeddedLowTrafficWaits(t *testing.T) {
	// 1 canary request a second: 30 in the window, under the 50 required.
	st := embeddedRun(t, 1, 0.5, 40, func(RolloutStatus) bool { return false })
	mt := st.AnalysisRuns[0].Metrics[0]
	if st.Aborted || st.Step != 1 || mt.Count != 0 || mt.Measurements[len(mt.Measurements)-1].Phase != MeasurementLowTraffic {
		t.Fatalf("%+v %+v", st, mt)
	}
}
