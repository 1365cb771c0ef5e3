package router

import (
	"net/http"
	"net/netip"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/sluice-mesh/sluice/model"
)

// benchTable builds the table the router benchmark uses: a 90/10 split with header
// routes, an internal-traffic marker and metrics on.
func benchTable(b *testing.B) (*Router, *listenerTable) {
	r, err := New(Options{Logger: zap.NewNop(), Registerer: prometheus.NewRegistry()})
	if err != nil {
		b.Fatal(err)
	}
	s := &model.Snapshot{Version: 1,
		Clusters: []model.Cluster{
			{Name: "canary", Endpoints: []model.Endpoint{{Address: "127.0.0.1:9002", Weight: 1}}},
			{Name: "stable", Endpoints: []model.Endpoint{{Address: "127.0.0.1:9001", Weight: 1}}},
		},
		Listeners: []model.Listener{{Name: "l", Address: "127.0.0.1:8080",
			InternalTraffic: &model.InternalTraffic{
				Headers:        []model.HeaderMatch{{Name: "x-internal-test", Value: model.StringMatch{Exact: "true"}}},
				TrustedSources: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
			},
			Routes: []model.Route{{Name: "web", Hosts: []string{"*"}, PathPrefix: "/", Cluster: "stable",
				Split: []model.WeightedCluster{{Cluster: "stable", Weight: 90}, {Cluster: "canary", Weight: 10}},
				HeaderRoutes: []model.HeaderRoute{
					{Name: "beta", Cluster: "canary", Headers: []model.HeaderMatch{{Name: "x-user", Value: model.StringMatch{Prefix: "beta-"}}}},
					{Name: "re", Cluster: "canary", Headers: []model.HeaderMatch{{Name: "x-canary", Value: model.StringMatch{Regex: "yes|1"}}}},
				},
				InternalCluster: "canary",
			}},
		}},
	}
	t, err := r.build(s)
	if err != nil {
		b.Fatal(err)
	}
	return r, t.listeners["127.0.0.1:8080"]
}

// benchInput is an ordinary request as decide sees it.
func benchInput() *routeInput {
	return &routeInput{host: "example.com", path: "/api/items", peer: netip.MustParseAddr("192.0.2.1"),
		header: http.Header{"User-Agent": {"bench"}, "X-User": {"alpha-1"}}}
}

// BenchmarkDecide measures the routing decision (marker check, route match, header
// routes, weighted split) for an ordinary request that falls through to the split.
func BenchmarkDecide(b *testing.B) {
	_, lt := benchTable(b)
	in := benchInput()
	b.ReportAllocs()
	for b.Loop() {
		d := lt.decide(in)
		if d.up == nil {
			b.Fatal("no cluster")
		}
	}
}

// BenchmarkDecideAndObserve adds recording the request in the analysis series.
func BenchmarkDecideAndObserve(b *testing.B) {
	_, lt := benchTable(b)
	in := benchInput()
	b.ReportAllocs()
	for b.Loop() {
		d := lt.decide(in)
		d.route.metrics[d.up].observe(http.MethodGet, http.StatusOK, reasonNone, 0.0012)
	}
}
