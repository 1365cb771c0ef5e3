package xds

import (
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
)

// ClusterHealth reports the xDS server's view of cluster for the rollout controller
// (analyzer.HealthReporter): the endpoints Sluice serves for it in the current generation's
// EDS (for a Cluster without discovery, its configured endpoints). Sluice cannot see
// what each proxy's own health checks and outlier detection find, so an endpoint counts
// as healthy unless it is served as unhealthy, draining or timed out, and ejected is
// always 0. known is false before the first snapshot, or when it has no such cluster.
func (s *Server) ClusterHealth(cluster string) (healthy, ejected, total int, known bool) {
	g := s.target(ShapeEnvoy)
	if g == nil || g.c[kindEDS] == nil {
		return 0, 0, 0, false
	}
	r := g.c[kindEDS].byName[cluster]
	if r == nil {
		return 0, 0, 0, false
	}
	var cla endpointv3.ClusterLoadAssignment
	if err := r.any.UnmarshalTo(&cla); err != nil {
		return 0, 0, 0, false
	}
	for _, loc := range cla.GetEndpoints() {
		for _, ep := range loc.GetLbEndpoints() {
			total++
			switch ep.GetHealthStatus() {
			case corev3.HealthStatus_UNHEALTHY, corev3.HealthStatus_DRAINING, corev3.HealthStatus_TIMEOUT:
			default:
				healthy++
			}
		}
	}
	return healthy, 0, total, true
}
