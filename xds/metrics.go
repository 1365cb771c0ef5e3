package xds

import "github.com/prometheus/client_golang/prometheus"

// metrics are the server's Prometheus series.
type metrics struct {
	connected  prometheus.Gauge
	version    prometheus.Gauge
	acks       *prometheus.CounterVec
	nacks      *prometheus.CounterVec
	responses  *prometheus.CounterVec
	ackLatency *prometheus.HistogramVec
	invalid    prometheus.Counter
	edsOnly    prometheus.Counter
	// byType holds each served type's short name and metric children, by type URL, so
	// the per-response path does no label hashing.
	byType map[string]*typeMetrics
}

type typeMetrics struct {
	name                   string
	acks, nacks, responses prometheus.Counter
	latency                prometheus.Observer
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		connected: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sluice_xds_connected_proxies", Help: "xDS nodes with at least one open ADS stream.",
		}),
		version: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sluice_xds_snapshot_version", Help: "Version of the last snapshot applied.",
		}),
		acks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_xds_acks_total", Help: "ACKs of a new version received, by resource type.",
		}, []string{"type"}),
		nacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_xds_nacks_total", Help: "NACKs received, by resource type.",
		}, []string{"type"}),
		responses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_xds_responses_total", Help: "Discovery responses sent, by resource type.",
		}, []string{"type"}),
		ackLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "sluice_xds_push_to_ack_seconds",
			Help:    "Time from sending a response to receiving its ACK, by resource type.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"type"}),
		invalid: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sluice_xds_invalid_snapshots_total", Help: "Snapshots refused by validation, never sent.",
		}),
		edsOnly: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sluice_xds_eds_only_pushes_total",
			Help: "Snapshots in which only endpoints changed, pushed as EDS alone (CDS, LDS and RDS unchanged).",
		}),
	}
	for _, c := range []prometheus.Collector{m.connected, m.version, m.acks, m.nacks, m.responses, m.ackLatency, m.invalid, m.edsOnly} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	m.byType = map[string]*typeMetrics{}
	for url, t := range typeNames {
		m.byType[url] = &typeMetrics{
			name: t, acks: m.acks.WithLabelValues(t), nacks: m.nacks.WithLabelValues(t),
			responses: m.responses.WithLabelValues(t), latency: m.ackLatency.WithLabelValues(t),
		}
	}
	return m, nil
}
