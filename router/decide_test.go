package router

import (
	"context"
	"net/http"
	"net/netip"
	"testing"

	"github.com/sluice-mesh/sluice/model"
)

// TestDecideMatchesAsEnvoyAndGRPC pins the rules e2e/parity found the router broke
// against Envoy and grpc-go: a header field sent several times is matched as its values
// joined with "," (the internal-traffic marker too); a mirror's path match compares the
// path as sent, not decoded. A trusted marker on a route without an internal cluster is
// routed normally and kept out of analysis (where Envoy differs, as documented).
func TestDecideMatchesAsEnvoyAndGRPC(t *testing.T) {
	r, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Shutdown(context.Background())
	ep := func(a string) []model.Endpoint { return []model.Endpoint{{Address: a, Weight: 1}} }
	post := model.StringMatch{Exact: "POST"}
	tb, err := r.build(&model.Snapshot{
		Clusters: []model.Cluster{{Name: "canary", Endpoints: ep("127.0.0.1:1")}, {Name: "stable", Endpoints: ep("127.0.0.1:2")}},
		Listeners: []model.Listener{{
			Name: "web", Address: "127.0.0.1:80",
			InternalTraffic: &model.InternalTraffic{
				Headers:        []model.HeaderMatch{{Name: "x-internal-test", Value: model.StringMatch{Exact: "true"}}},
				TrustedSources: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")},
			},
			Routes: []model.Route{
				{Name: "static", Hosts: []string{"*"}, PathPrefix: "/static/", Cluster: "stable"},
				{Name: "api", Hosts: []string{"*"}, PathPrefix: "/", Cluster: "stable",
					Split:           []model.WeightedCluster{{Cluster: "stable", Weight: 100}, {Cluster: "canary", Weight: 0}},
					InternalCluster: "canary",
					HeaderRoutes: []model.HeaderRoute{
						{Name: "beta", Cluster: "canary", Headers: []model.HeaderMatch{{Name: "x-beta", Value: model.StringMatch{Exact: "1"}}}},
						{Name: "csv", Cluster: "canary", Headers: []model.HeaderMatch{{Name: "x-beta", Value: model.StringMatch{Exact: "2,3"}}}},
					},
					Mirrors: []model.Mirror{{Name: "orders", Cluster: "canary", Percentage: 100,
						Matches: []model.RequestMatch{{Method: &post, Path: &model.StringMatch{Prefix: "/api/orders"}}}}}},
			},
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	lt := tb.listeners["127.0.0.1:80"]
	trusted := netip.MustParseAddr("127.0.0.1")
	for _, c := range []struct {
		name, path string
		header     http.Header
		route, up  string
		internal   bool
	}{
		{name: "one x-beta: 1", path: "/api", header: http.Header{"X-Beta": {"1"}}, route: "api", up: "canary"},
		{name: "x-beta twice is 1,1: no header route (the split: stable at 100)", path: "/api", header: http.Header{"X-Beta": {"1", "1"}}, route: "api", up: "stable"},
		{name: "2 and 3 are 2,3", path: "/api", header: http.Header{"X-Beta": {"2", "3"}}, route: "api", up: "canary"},
		{name: "marker twice is true,true: not internal", path: "/api", header: http.Header{"X-Internal-Test": {"true", "true"}}, route: "api", up: "stable"},
		{name: "marker on the rollout's route", path: "/api", header: http.Header{"X-Internal-Test": {"true"}}, route: "api", up: "canary", internal: true},
		{name: "marker on a route without an internal cluster: routed normally, kept out of analysis", path: "/static/x", header: http.Header{"X-Internal-Test": {"true"}}, route: "static", up: "stable", internal: true},
	} {
		d := lt.decide(&routeInput{host: "a", path: c.path, header: c.header, peer: trusted, marker: c.header["X-Internal-Test"] != nil})
		if d.route == nil || d.route.name != c.route || d.up.name != c.up || d.internal != c.internal {
			t.Errorf("%s: route %v, cluster %v, internal %v; want %s, %s, %v", c.name, d.route.name, d.up.name, d.internal, c.route, c.up, c.internal)
		}
	}

	m := lt.routes[1].mirrors[0].matches[0]
	for target, want := range map[string]bool{"/api/orders/1": true, "/api/%6Frders/1": false, "/api/orders?x": true} {
		req, err := http.NewRequest(http.MethodPost, "http://a"+target, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.RequestURI = target
		if got := m.match(req); got != want {
			t.Errorf("mirror match of POST %s = %v, want %v", target, got, want)
		}
	}
}
