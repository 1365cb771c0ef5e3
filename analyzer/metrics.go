package analyzer

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the analyzer's Prometheus series.
type metrics struct {
	phase        *prometheus.GaugeVec
	weight       *prometheus.GaugeVec
	measurements *prometheus.CounterVec
	events       *prometheus.CounterVec
	abortLatency prometheus.Histogram
	saveErrors   prometheus.Counter
	healthy      *prometheus.GaugeVec
	ejected      *prometheus.GaugeVec
	endpoints    *prometheus.GaugeVec
}

var allPhases = []Phase{PhaseProgressing, PhasePaused, PhaseHealthy, PhaseDegraded}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		phase: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sluice_rollout_phase", Help: "1 for the rollout's current phase, 0 for the others.",
		}, []string{"rollout", "phase"}),
		weight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sluice_rollout_weight", Help: "Canary weight: kind=set is wanted, kind=actual is applied by every data plane.",
		}, []string{"rollout", "kind"}),
		measurements: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_analysis_measurements_total", Help: "Analysis measurements by outcome.",
		}, []string{"rollout", "metric", "phase"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_rollout_events_total", Help: "Rollout events (started, stepCompleted, paused, resumed, aborted, promoted, analysisFailed, waitingForHealth, healthChanged).",
		}, []string{"rollout", "type"}),
		abortLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "sluice_rollout_abort_latency_seconds",
			Help:    "From the measurement (or command) causing an abort to the zero canary weight applied by every data plane.",
			Buckets: []float64{0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30},
		}),
		saveErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sluice_rollout_state_save_errors_total",
			Help: "Failed saves of rollout state (while failing, only aborts take effect).",
		}),
		healthy: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sluice_cluster_healthy_endpoints",
			Help: "Endpoints of the cluster that are up, as a step raising the canary's weight needs (router: active health checks, else not ejected; xds: the endpoints served).",
		}, []string{"cluster", "plane"}),
		ejected: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sluice_cluster_ejected_endpoints",
			Help: "Endpoints of the cluster the data plane's passive outlier detection ejected (router only).",
		}, []string{"cluster", "plane"}),
		endpoints: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sluice_cluster_endpoints",
			Help: "Endpoints of the cluster in the data plane, healthy or not.",
		}, []string{"cluster", "plane"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.phase, m.weight, m.measurements, m.events, m.abortLatency, m.saveErrors,
			m.healthy, m.ejected, m.endpoints} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

func (m *metrics) setRollout(st *State) {
	for _, p := range allPhases {
		v := 0.0
		if st.Phase == p {
			v = 1
		}
		m.phase.WithLabelValues(st.Rollout, string(p)).Set(v)
	}
	m.weight.WithLabelValues(st.Rollout, "set").Set(float64(st.SetWeight))
	m.weight.WithLabelValues(st.Rollout, "actual").Set(float64(max(st.ActualWeight, 0)))
}

func (m *metrics) forget(rollout string) {
	l := prometheus.Labels{"rollout": rollout}
	m.phase.DeletePartialMatch(l)
	m.weight.DeletePartialMatch(l)
	m.measurements.DeletePartialMatch(l)
	m.events.DeletePartialMatch(l)
}

func (m *metrics) setClusterHealth(cluster string, p PlaneHealth) {
	m.healthy.WithLabelValues(cluster, p.Plane).Set(float64(p.Healthy))
	m.ejected.WithLabelValues(cluster, p.Plane).Set(float64(p.Ejected))
	m.endpoints.WithLabelValues(cluster, p.Plane).Set(float64(p.Total))
}

func (m *metrics) forgetClusterHealth(cluster, plane string) {
	m.healthy.DeleteLabelValues(cluster, plane)
	m.ejected.DeleteLabelValues(cluster, plane)
	m.endpoints.DeleteLabelValues(cluster, plane)
}
