package router

import (
	"time"

	"github.com/sluice-mesh/sluice/model"
)

// ClusterHealth reports the router's view of cluster for the rollout controller
// (analyzer.HealthReporter): of the cluster's endpoints in the current routing table
// (total), how many the router would send a request to now and has seen survive their
// health checks (healthy). known is false when no table is applied or the table has no
// such cluster. It reads atomics only: no I/O, no lock.
//
// An endpoint counts as healthy when it is available (its last active health verdict is
// good and it is not ejected) and, for a Cluster with a healthCheck, it has been so for
// long enough that its checks would have failed it by now if it did not answer:
// unhealthyThreshold intervals plus one timeout since it was added or last turned
// healthy. An endpoint starts out available before its first check has run, so without
// this a canary with nothing listening would look healthy for its first seconds. A
// Cluster without a healthCheck has only passive ejection: its endpoints count from the
// start, and a dead one is seen only once requests to it have failed.
func (r *Router) ClusterHealth(cluster string) (healthy, total int, known bool) {
	t := r.table.Load()
	if t == nil {
		return 0, 0, false
	}
	u := t.upstreams[cluster]
	if u == nil {
		return 0, 0, false
	}
	now := r.now().UnixNano()
	settle := int64(0)
	if hc := u.cfg.HealthCheck; hc != nil {
		settle = int64(healthCheckSettle(*hc))
	}
	for _, e := range u.eps {
		if e.available(now) && now-e.readySince.Load() >= settle {
			healthy++
		}
	}
	return healthy, len(u.eps), true
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
