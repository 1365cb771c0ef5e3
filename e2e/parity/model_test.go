package parity

import (
	"net/netip"
	"time"

	"github.com/sluice-mesh/sluice/model"
)

// Peers: the router and Envoy trust the internal-traffic marker from 127.0.0.1 only;
// ordinary clients come from 127.0.0.2.
const (
	trustedPeer   = "127.0.0.1"
	untrustedPeer = "127.0.0.2"
)

// Request timeouts of the rollout's clusters: a slow request (its backend sleeps for
// sleepy) exceeds the canary's, not the stable's; an ordinary one, even on a loaded
// machine under -race, exceeds neither.
const (
	stableTimeout = 5 * time.Second
	canaryTimeout = time.Second
	sleepy        = "1500ms"
)

// clusterNames are the model's clusters; each but "down" has one backend of that name.
var clusterNames = []string{"api-canary", "api-shadow", "api-stable", "down", "eu", "fallback", "static", "wild", "www"}

// paritySnapshot is the one routing table every data plane serves: listener "web" (at
// webAddr) and listener "shop" (at shopAddr, with sticky sessions), with clusters whose
// endpoints are the given backends' addresses.
//
// web's hosts: api.example.com (exact) with a static route (/static/) before the
// rollout's route (/), split api-stable 70 / api-canary 30 with per-cluster timeouts,
// header routes (exact, prefix, regex, and one to the stable), the internal-traffic
// marker (two headers, one by prefix) trusted from 127.0.0.1 only, and mirrors (POST
// /api/orders to the canary, x-debug: mirror to the shadow, and one at 0%);
// *.eu.example.com (only /eu/), *.example.com, www.* (a prefix wildcard),
// down.example.com (a cluster without endpoints), aborted.example.com (split 100/0, as
// after an abort, with a header route to the canary) and *. shop's only host,
// shop.example.com, is split like api.
func paritySnapshot(webAddr, shopAddr string, addr map[string]string) *model.Snapshot {
	var clusters []model.Cluster
	for _, name := range clusterNames {
		c := model.Cluster{Name: name, Protocol: model.ProtocolHTTP1}
		if a := addr[name]; a != "" {
			c.Endpoints = []model.Endpoint{{Address: a, Weight: 1}}
		}
		switch name {
		case "api-stable":
			c.RequestTimeout = stableTimeout
		case "api-canary":
			c.RequestTimeout = canaryTimeout
		}
		clusters = append(clusters, c)
	}
	exact := func(v string) model.StringMatch { return model.StringMatch{Exact: v} }
	header := func(name string, v model.StringMatch) []model.HeaderMatch {
		return []model.HeaderMatch{{Name: name, Value: v}}
	}
	split := []model.WeightedCluster{{Cluster: "api-stable", Weight: 70}, {Cluster: "api-canary", Weight: 30}}
	post := exact("POST")
	return &model.Snapshot{
		Version:  1,
		Clusters: clusters,
		Listeners: []model.Listener{
			{
				Name: "shop", Address: shopAddr,
				StickySessions: &model.StickySessions{Cookie: "sluice-shop", MaxAge: time.Hour},
				Routes: []model.Route{{Name: "shop", Hosts: []string{"shop.example.com"}, PathPrefix: "/", Cluster: "api-stable",
					Rollout: "api", Split: split}},
			},
			{
				Name: "web", Address: webAddr,
				InternalTraffic: &model.InternalTraffic{
					Headers: []model.HeaderMatch{
						{Name: "x-internal-test", Value: exact("true")},
						{Name: "x-qa", Value: model.StringMatch{Prefix: "team-"}},
					},
					TrustedSources: []netip.Prefix{netip.MustParsePrefix(trustedPeer + "/32")},
				},
				Routes: []model.Route{
					{Name: "static", Hosts: []string{"api.example.com"}, PathPrefix: "/static/", Cluster: "static"},
					{Name: "api", Hosts: []string{"api.example.com"}, PathPrefix: "/", Cluster: "api-stable",
						Rollout: "api", Split: split, InternalCluster: "api-canary",
						HeaderRoutes: []model.HeaderRoute{
							{Name: "beta", Cluster: "api-canary", Headers: header("x-beta", exact("1"))},
							{Name: "cohort", Cluster: "api-canary", Headers: header("x-user", model.StringMatch{Prefix: "tester-"})},
							{Name: "version", Cluster: "api-canary", Headers: header("x-version", model.StringMatch{Regex: `v2\.[0-9]+`})},
							{Name: "pin", Cluster: "api-stable", Headers: header("x-pin", exact("stable"))},
						},
						Mirrors: []model.Mirror{
							{Name: "orders", Cluster: "api-canary", Percentage: 100,
								Matches: []model.RequestMatch{{Method: &post, Path: &model.StringMatch{Prefix: "/api/orders"}}}},
							{Name: "debug", Cluster: "api-shadow", Percentage: 100,
								Matches: []model.RequestMatch{{Headers: header("x-debug", exact("mirror"))}}},
							{Name: "never", Cluster: "api-shadow", Percentage: 0},
						}},
					{Name: "eu", Hosts: []string{"*.eu.example.com"}, PathPrefix: "/eu/", Cluster: "eu"},
					{Name: "wild", Hosts: []string{"*.example.com"}, PathPrefix: "/", Cluster: "wild"},
					{Name: "www", Hosts: []string{"www.*"}, PathPrefix: "/", Cluster: "www"},
					{Name: "down", Hosts: []string{"down.example.com"}, PathPrefix: "/", Cluster: "down"},
					{Name: "aborted", Hosts: []string{"aborted.example.com"}, PathPrefix: "/", Cluster: "api-stable", Rollout: "api",
						Split:        []model.WeightedCluster{{Cluster: "api-stable", Weight: 100}, {Cluster: "api-canary", Weight: 0}},
						HeaderRoutes: []model.HeaderRoute{{Name: "beta", Cluster: "api-canary", Headers: header("x-beta", exact("1"))}}},
					{Name: "fallback", Hosts: []string{"*"}, PathPrefix: "/", Cluster: "fallback"},
				},
			},
		},
	}
}
