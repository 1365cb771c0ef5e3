package ha

import "github.com/prometheus/client_golang/prometheus"

// metrics are the replica's own series (README's metrics reference lists them).
type metrics struct {
	leader        prometheus.Gauge
	reachable     prometheus.Gauge
	mismatch      prometheus.Gauge
	terms         prometheus.Counter
	termsLost     *prometheus.CounterVec
	writes        *prometheus.CounterVec
	keepaliveFail prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		leader: prometheus.NewGauge(prometheus.GaugeOpts{Name: "sluice_ha_leader",
			Help: "1 while this replica leads (decides), else 0."}),
		reachable: prometheus.NewGauge(prometheus.GaugeOpts{Name: "sluice_ha_etcd_reachable",
			Help: "1 while this replica's lease keepalives succeed, else 0."}),
		mismatch: prometheus.NewGauge(prometheus.GaugeOpts{Name: "sluice_ha_config_mismatch",
			Help: "1 when this replica's config digest differs from the leader's (it will not lead)."}),
		terms: prometheus.NewCounter(prometheus.CounterOpts{Name: "sluice_ha_terms_total",
			Help: "Terms of leadership this replica began."}),
		termsLost: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_ha_terms_lost_total",
			Help: "Terms of leadership this replica ended, by reason."}, []string{"reason"}),
		writes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_ha_fenced_writes_total",
			Help: "Fenced leader writes (state, command outcomes), by result: ok, refused (not the leader), error."}, []string{"result"}),
		keepaliveFail: prometheus.NewCounter(prometheus.CounterOpts{Name: "sluice_ha_keepalive_failures_total",
			Help: "Lease keepalives that failed or timed out."}),
	}
	for _, r := range []string{reasonKeepalive, reasonExpired, reasonDeposed, reasonShutdown} {
		m.termsLost.WithLabelValues(r)
	}
	for _, r := range []string{"ok", "refused", "error"} {
		m.writes.WithLabelValues(r)
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.leader, m.reachable, m.mismatch, m.terms, m.termsLost, m.writes, m.keepaliveFail} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}
