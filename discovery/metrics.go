package discovery

import "github.com/prometheus/client_golang/prometheus"

// metrics are the discovery series; README.md's metrics reference lists them.
type metrics struct {
	resolutions *prometheus.CounterVec
	endpoints   *prometheus.GaugeVec
	lastSuccess *prometheus.GaugeVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		resolutions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_discovery_resolutions_total",
			Help: "Discovery answers by cluster and result (success, empty, nxdomain, servfail, refused, timeout, unreachable, error).",
		}, []string{"cluster", "result"}),
		endpoints: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sluice_discovery_endpoints",
			Help: "Endpoints a discovered cluster is served with now (fixed and discovered, draining ones excluded).",
		}, []string{"cluster"}),
		lastSuccess: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sluice_discovery_last_success_timestamp_seconds",
			Help: "Unix time of the cluster's last good discovery answer.",
		}, []string{"cluster"}),
	}
	if reg != nil {
		reg.MustRegister(m.resolutions, m.endpoints, m.lastSuccess)
	}
	return m
}

// forget drops a cluster's series (it left the configuration or stopped discovering).
func (m *metrics) forget(cluster string) {
	m.resolutions.DeletePartialMatch(prometheus.Labels{"cluster": cluster})
	m.endpoints.DeleteLabelValues(cluster)
	m.lastSuccess.DeleteLabelValues(cluster)
}
