package admin

import (
	"context"
	"net/http"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
)

// RouterMetricsPath serves this replica's raw router series (bearer token required when
// one is set): the leader of a replicated control plane reads every replica's, so that
// the embedded analysis sees the traffic of every router.
const RouterMetricsPath = "/api/v1/router/metrics"

// replicaRoutes are the endpoints of a replica of a replicated control plane
// (ControlPlane.spec.store.etcd); without one they answer 404.
type replicaRoutes struct {
	mu      sync.Mutex
	view    func(ctx context.Context) any
	metrics http.Handler
}

// SetReplicas makes GET /api/v1/replicas answer view's result as JSON: the replicas,
// who leads, what each one's data planes applied (cmd/sluice builds it over package ha).
func (s *Server) SetReplicas(view func(ctx context.Context) any) {
	s.replicas.mu.Lock()
	s.replicas.view = view
	s.replicas.mu.Unlock()
}

// SetRouterMetrics serves g (the router's own registry) at RouterMetricsPath.
func (s *Server) SetRouterMetrics(g prometheus.Gatherer) {
	s.replicas.mu.Lock()
	s.replicas.metrics = promhttp.HandlerFor(g, promhttp.HandlerOpts{})
	s.replicas.mu.Unlock()
}

// Token returns the bearer token in force ("" none): the other replicas are called with it.
func (s *Server) Token() string { return s.token() }

func (s *Server) replicaRoutes(m *http.ServeMux) {
	m.HandleFunc("GET /api/v1/replicas", func(w http.ResponseWriter, r *http.Request) {
		s.replicas.mu.Lock()
		view := s.replicas.view
		s.replicas.mu.Unlock()
		if view == nil {
			writeError(w, http.StatusNotFound, "this Sluice runs alone: no store.etcd, no replicas")
			return
		}
		writeJSON(w, http.StatusOK, view(r.Context()))
	})
	m.HandleFunc("GET "+RouterMetricsPath, func(w http.ResponseWriter, r *http.Request) {
		s.replicas.mu.Lock()
		h := s.replicas.metrics
		s.replicas.mu.Unlock()
		if h == nil {
			writeError(w, http.StatusNotFound, "no router series here (this Sluice is not a replica on store.etcd)")
			return
		}
		if !s.authorized(r) {
			s.refused.Inc()
			s.log.Warn("router series refused: missing or wrong bearer token (replicas must share the admin token)",
				zap.String("remote", r.RemoteAddr))
			w.Header().Set("WWW-Authenticate", `Bearer realm="sluice"`)
			writeError(w, http.StatusUnauthorized, "missing or wrong bearer token")
			return
		}
		h.ServeHTTP(w, r)
	})
}
