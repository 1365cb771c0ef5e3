package xds

import (
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
)

// ClusterHealth reports the xDS server's view of cluster for the rollout controller
// (analyzer.HealthReporter): the endpoints Sluice serves for it in the current snapshot's
// EDS (for a Cluster without discovery, its configured endpoints). Sluice cannot see
// what each proxy's own health checks and outlier detection find, so an endpoint counts
// as healthy unless it is served as unhealthy, draining or timed out, and ejected is
// always 0. known is false before the first snapshot, or when the snapshot has no such
// cluster.
func (s *Server) ClusterHealth(cluster string) (healthy, ejected, total int, known bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.fleets[ShapeEnvoy]
	if f == nil || f.snap == nil {
		return 0, 0, 0, false
	}
	item, ok := f.snap.Resources[types.Endpoint].Items[cluster]
	if !ok {
		return 0, 0, 0, false
	}
	cla, ok := item.Resource.(*endpointv3.ClusterLoadAssignment)
	if !ok {
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
