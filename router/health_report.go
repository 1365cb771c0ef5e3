package router

import (
	"time"

	"github.com/sluice-mesh/sluice/model"
)

// ClusterHealth reports the router's view of cluster for the rollout controller
// (analyzer.HealthReporter): of the cluster's endpoints in the current routing table
// (total), how many are up (healthy) and how many passive outlier detection has ejected
// now (ejected). known is false when no table is applied or the table has no such
// cluster. It reads atomics only: no I/O, no lock, no change to any endpoint.
//
// For a Cluster with a healthCheck, the active check decides whether an endpoint is up
// (as a readiness probe does; an ejection reacts to errors, which the analysis judges):
// its last verdict is good, and it has been so long enough for its checks to have failed
// it if it did not answer — unhealthyThreshold intervals plus one timeout since it was
// added or last turned healthy (or came back from an ejection). An endpoint starts out
// available before its first check has run: without this, a canary with nothing
// listening would look up for its first seconds. A Cluster without a healthCheck has
// only passive ejection: an endpoint is up unless ejected, so a dead one is seen only
// once requests to it have failed.
func (r *Router) ClusterHealth(cluster string) (healthy, ejected, total int, known bool) {
	t := r.table.Load()
	if t == nil {
		return 0, 0, 0, false
	}
	u := t.upstreams[cluster]
	if u == nil {
		return 0, 0, 0, false
	}
	now := r.now().UnixNano()
	hc := u.cfg.HealthCheck
	var settle int64
	if hc != nil {
		settle = int64(healthCheckSettle(*hc))
	}
	for _, e := range u.eps {
		out := now < e.ejectedUntil.Load()
		if out {
			ejected++
		}
		up := !out
		if hc != nil {
			up = e.activeOK.Load() && now-e.readySince.Load() >= settle
		}
		if up {
			healthy++
		}
	}
	return healthy, ejected, len(u.eps), true
}

// healthCheckSettle is how long after an endpoint turned available its active checks
// must have run for a dead endpoint to have been failed: unhealthyThreshold intervals
// plus one timeout, with the router's defaults for fields left zero (startHealthCheck).
func healthCheckSettle(hc model.HealthCheck) time.Duration {
	interval := hc.Interval
	if interval <= 0 {
		interval = 5 * time.Second
	}
	timeout := hc.Timeout
	if timeout <= 0 {
		timeout = min(interval, 2*time.Second)
	}
	unhealthy := hc.UnhealthyThreshold
	if unhealthy <= 0 {
		unhealthy = 2
	}
	return time.Duration(unhealthy)*interval + timeout
}
