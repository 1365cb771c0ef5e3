package router

// ClusterHealth reports the router's view of cluster for the rollout controller
// (analyzer.HealthReporter): of the cluster's endpoints in the current routing table
// (total; draining ones are not in it), how many are up (healthy) and how many passive
// outlier detection has ejected now (ejected). known is false when no table is applied
// or the table has no such cluster. It reads atomics only: no I/O, no lock, no change to
// any endpoint.
//
// For a Cluster with a healthCheck, the active check decides whether an endpoint is up
// (as a readiness probe does; an ejection reacts to errors, which the analysis judges):
// a new endpoint is pending, and not up, until its first probe — run as soon as it
// appears — passes; after that its last verdict counts. A Cluster without a healthCheck
// has only passive ejection: an endpoint is up unless ejected, so a dead one is seen only
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
	checked := u.cfg.HealthCheck != nil
	for _, e := range u.eps {
		out := now < e.ejectedUntil.Load()
		if out {
			ejected++
		}
		up := !out
		if checked {
			up = e.activeOK.Load()
		}
		if up {
			healthy++
		}
	}
	return healthy, ejected, len(u.eps), true
}
