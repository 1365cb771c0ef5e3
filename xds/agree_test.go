package xds

import (
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"

	"github.com/sluice-mesh/sluice/model"
	"github.com/sluice-mesh/sluice/xds/xdstest"
)

// agreeModel: listener "web" with a static route on every host and the rollout's route
// on api.example.com (prefix /api), split stable/canary at canary%, the stable with a
// 10 s timeout and the canary with 3 s, a header route, sticky sessions (which the
// router alone honours), internal traffic from 10.0.0.0/8, and two mirrors (POST /api/orders at 100%, everything at 0%).
func agreeModel(canary int) *model.Snapshot {
	ep := func(a string) []model.Endpoint { return []model.Endpoint{{Address: a, Weight: 1}} }
	post := model.StringMatch{Exact: "POST"}
	return &model.Snapshot{
		Version: 1,
		Clusters: []model.Cluster{
			{Name: "canary", Endpoints: ep("10.0.0.2:80"), RequestTimeout: 3 * time.Second},
			{Name: "stable", Endpoints: ep("10.0.0.1:80"), RequestTimeout: 10 * time.Second},
			{Name: "static", Endpoints: ep("10.0.0.3:80")},
		},
		Listeners: []model.Listener{{
			Name: "web", Address: "0.0.0.0:8080",
			InternalTraffic: &model.InternalTraffic{
				Headers:        []model.HeaderMatch{{Name: "x-internal", Value: model.StringMatch{Exact: "1"}}},
				TrustedSources: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")},
			},
			StickySessions: &model.StickySessions{Cookie: "pin", MaxAge: time.Hour},
			Routes: []model.Route{
				{Name: "api", Hosts: []string{"API.example.com"}, PathPrefix: "/api", Cluster: "stable", Rollout: "api",
					Split:           []model.WeightedCluster{{Cluster: "stable", Weight: 100 - canary}, {Cluster: "canary", Weight: canary}},
					InternalCluster: "canary",
					HeaderRoutes: []model.HeaderRoute{{Name: "beta", Cluster: "canary",
						Headers: []model.HeaderMatch{{Name: "x-beta", Value: model.StringMatch{Exact: "1"}}}}},
					Mirrors: []model.Mirror{
						{Name: "posts", Cluster: "canary", Percentage: 100,
							Matches: []model.RequestMatch{{Method: &post, Path: &model.StringMatch{Prefix: "/api/orders"}}}},
						{Name: "escape", Cluster: "canary", Percentage: 100,
							Matches: []model.RequestMatch{{Path: &model.StringMatch{Prefix: "/elsewhere"}}}},
					}},
				{Name: "static", Hosts: []string{"*"}, PathPrefix: "/", Cluster: "static"},
			},
		}},
	}
}

// envoyView translates a snapshot for Envoy and returns a function deciding requests
// the way Envoy would with that output.
func envoyView(t *testing.T, snap *model.Snapshot) func(xdstest.Request) xdstest.Result {
	t.Helper()
	res, err := Translate(snap, ShapeEnvoy)
	if err != nil {
		t.Fatal(err)
	}
	if err := Check(res); err != nil {
		t.Fatal(err)
	}
	hcm := &hcmv3.HttpConnectionManager{}
	if err := res.Listeners[0].FilterChains[0].Filters[0].GetTypedConfig().UnmarshalTo(hcm); err != nil {
		t.Fatal(err)
	}
	if len(hcm.UpgradeConfigs) != 1 || hcm.UpgradeConfigs[0].UpgradeType != "websocket" {
		t.Fatalf("listener without the WebSocket upgrade: %v", hcm.UpgradeConfigs)
	}
	have := map[string]bool{}
	for _, c := range res.Clusters {
		have[c.Name] = true
	}
	return func(req xdstest.Request) xdstest.Result {
		return xdstest.Route(hcm, res.Routes[0], func(c string) bool { return have[c] }, req)
	}
}

func TestEnvoyOutputDecidesLikeTheRouter(t *testing.T) {
	decide := envoyView(t, agreeModel(30))
	outside := netip.MustParseAddr("192.0.2.7")
	for _, c := range []struct {
		name    string
		req     xdstest.Request
		cluster string
		timeout time.Duration
		mirrors string
	}{
		{"host with a port", xdstest.Request{Host: "api.example.com:8080", Path: "/api/x", Random: 10, Peer: outside}, "stable", 10 * time.Second, ""},
		{"upper-case host", xdstest.Request{Host: "API.EXAMPLE.COM", Path: "/api/x", Random: 99, Peer: outside}, "canary", 3 * time.Second, ""},
		{"other host", xdstest.Request{Host: "www.example.com", Path: "/api/x", Peer: outside}, "static", 0, ""},
		{"header route, the canary's timeout", xdstest.Request{Host: "api.example.com", Path: "/api/x", Random: 10, Peer: outside,
			Header: http.Header{"X-Beta": {"1"}}}, "canary", 3 * time.Second, ""},
		{"internal from a trusted peer", xdstest.Request{Host: "api.example.com", Path: "/api/x", Random: 10,
			Peer: netip.MustParseAddr("10.1.1.1"), Header: http.Header{"X-Internal": {"1"}}}, "canary-internal", 3 * time.Second, ""},
		{"internal marker from outside", xdstest.Request{Host: "api.example.com", Path: "/api/x", Random: 10, Peer: outside,
			Header: http.Header{"X-Internal": {"1"}}}, "stable", 10 * time.Second, ""},
		{"mirrored POST, split", xdstest.Request{Host: "api.example.com", Method: "POST", Path: "/api/orders/1", Random: 10, Peer: outside},
			"stable", 10 * time.Second, "canary-mirror"},
		{"mirrored POST on the header route", xdstest.Request{Host: "api.example.com", Method: "POST", Path: "/api/orders", Random: 10,
			Peer: outside, Header: http.Header{"X-Beta": {"1"}}}, "canary", 3 * time.Second, "canary-mirror"},
		{"GET not mirrored", xdstest.Request{Host: "api.example.com", Method: "GET", Path: "/api/orders", Random: 10, Peer: outside}, "stable", 10 * time.Second, ""},
		{"a mirror's path outside the route does not capture it", xdstest.Request{Host: "api.example.com", Path: "/elsewhere", Peer: outside}, "", 0, ""},
		// Sticky sessions are the router's alone: a cookie naming the canary (the old
		// format, forgeable) does not pin on Envoy; the random value decides.
		{"a cookie naming the canary does not pin", xdstest.Request{Host: "api.example.com", Path: "/api/x", Random: 10, Peer: outside,
			Header: http.Header{"Cookie": {"a=b; pin=canary; c=d"}}}, "stable", 10 * time.Second, ""},
		{"nor a cookie naming the stable", xdstest.Request{Host: "api.example.com", Path: "/api/x", Random: 99, Peer: outside,
			Header: http.Header{"Cookie": {"pin=stable"}}}, "canary", 3 * time.Second, ""},
	} {
		r := decide(c.req)
		if c.cluster == "" {
			// Only the most specific host's routes are tried: "*"'s static route is not
			// (Envoy's rule, which the router follows).
			if r.Status != 404 {
				t.Errorf("%s: got %s (status %d, route %s); want 404", c.name, r.Cluster, r.Status, r.Route)
			}
			continue
		}
		if r.Status != 200 || r.Cluster != c.cluster || r.Timeout != c.timeout || strings.Join(r.Mirrors, ",") != c.mirrors {
			t.Errorf("%s: got %s (status %d, timeout %v, mirrors %v, route %s); want %s, %v, mirrors %q",
				c.name, r.Cluster, r.Status, r.Timeout, r.Mirrors, r.Route, c.cluster, c.timeout, c.mirrors)
		}
	}
	// Over a window of 100 random values the split is exactly 70/30, whatever cookie the
	// client sends, and Envoy sets no cookie.
	n := map[string]int{}
	for i := uint64(0); i < 100; i++ {
		r := decide(xdstest.Request{Host: "api.example.com", Path: "/api/x", Random: 1000 + i, Peer: outside,
			Header: http.Header{"Cookie": {"pin=canary"}}})
		n[r.Cluster]++
		if len(r.ResponseHeaders) > 0 {
			t.Fatalf("response headers %v: Envoy must not set a sticky cookie the router would not accept", r.ResponseHeaders)
		}
	}
	if n["stable"] != 70 || n["canary"] != 30 {
		t.Errorf("split over 100 random values: %v, want 70/30", n)
	}
	// At weight 0 nothing reaches the canary.
	decide0 := envoyView(t, agreeModel(0))
	for i := uint64(0); i < 100; i++ {
		if r := decide0(xdstest.Request{Host: "api.example.com", Path: "/api/x", Random: i, Peer: outside,
			Header: http.Header{"Cookie": {"pin=canary"}}}); r.Cluster != "stable" {
			t.Fatalf("weight 0, random %d: %s", i, r.Cluster)
		}
	}
}
