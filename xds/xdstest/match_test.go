package xdstest

import (
	"net/http"
	"net/netip"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

func exact(name, v string) *routev3.HeaderMatcher {
	return &routev3.HeaderMatcher{Name: name, HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{
		StringMatch: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: v}}}}
}

func to(cluster string) *routev3.Route_Route {
	return &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: cluster}}}
}

func prefix(p string) *routev3.RouteMatch {
	return &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: p}}
}

// table is a route configuration exercising every rule Route implements.
func table(ignorePort bool) *routev3.RouteConfiguration {
	return &routev3.RouteConfiguration{
		Name:                     "t",
		IgnorePortInHostMatching: ignorePort,
		VirtualHosts: []*routev3.VirtualHost{
			{Name: "any", Domains: []string{"*"}, Routes: []*routev3.Route{{Name: "any", Match: prefix("/"), Action: to("default")}}},
			{Name: "exact", Domains: []string{"api.example.com"}, Routes: []*routev3.Route{
				{Name: "internal", Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"},
					Headers: []*routev3.HeaderMatcher{exact("x-envoy-internal", "true"), exact("x-test", "1")}}, Action: to("canary-internal")},
				{Name: "post", Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Path{Path: "/orders"},
					Headers: []*routev3.HeaderMatcher{exact(":method", "POST")}}, Action: to("orders")},
				{Name: "re", Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: "/v[0-9]+"}}}, Action: to("versioned")},
				{Name: "fraction", Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"},
					RuntimeFraction: &corev3.RuntimeFractionalPercent{DefaultValue: &typev3.FractionalPercent{Numerator: 30}}}, Action: to("thirty")},
				{Name: "split", Match: prefix("/"), Action: &routev3.Route_Route{Route: &routev3.RouteAction{
					ClusterSpecifier: &routev3.RouteAction_WeightedClusters{WeightedClusters: &routev3.WeightedCluster{
						Clusters: []*routev3.WeightedCluster_ClusterWeight{
							{Name: "stable", Weight: wrapperspb.UInt32(80)}, {Name: "canary", Weight: wrapperspb.UInt32(20)}}}}}}},
			}},
			{Name: "suffix", Domains: []string{"*.example.com"}, Routes: []*routev3.Route{{Name: "s", Match: prefix("/"), Action: to("suffix")}}},
			{Name: "longer-suffix", Domains: []string{"*.eu.example.com"}, Routes: []*routev3.Route{{Name: "ls", Match: prefix("/"), Action: to("eu")}}},
			{Name: "prefix", Domains: []string{"www.*"}, Routes: []*routev3.Route{{Name: "p", Match: prefix("/only/"), Action: to("www")}}},
		},
	}
}

func TestRouteVirtualHostPrecedence(t *testing.T) {
	hcm := &hcmv3.HttpConnectionManager{}
	cases := []struct {
		host, path string
		ignorePort bool
		vh         string
		status     int
	}{
		{"api.example.com", "/v2", false, "exact", 200},
		{"API.Example.COM", "/v2", false, "exact", 200},        // case-insensitive
		{"api.example.com:8080", "/v2", false, "any", 200},     // port kept: no exact match, "*"
		{"api.example.com:8080", "/v2", true, "exact", 200},    // ignore_port_in_host_matching
		{"a.eu.example.com", "/", false, "longer-suffix", 200}, // longest suffix wins
		{"eu.example.com", "/", false, "suffix", 200},          // "*.eu.example.com" needs a character for "*"
		{"example.com", "/", false, "any", 200},                // "*.example.com" does not match the bare domain
		{"badexample.com", "/", false, "any", 200},             // nor another domain ending alike
		{"www.other.org", "/only/x", false, "prefix", 200},     // prefix wildcard
		{"www.other.org", "/elsewhere", false, "prefix", 404},  // only the chosen host's routes are tried
		{"www.example.com", "/", false, "suffix", 200},         // suffix beats prefix
		{"[::1]:8080", "/", true, "any", 200},                  // IPv6 literal with a port
	}
	for _, c := range cases {
		r := Route(hcm, table(c.ignorePort), nil, Request{Host: c.host, Path: c.path, Random: 50})
		if r.VirtualHost != c.vh || r.Status != c.status {
			t.Errorf("%s%s (ignore port %v): virtual host %q status %d; want %q %d", c.host, c.path, c.ignorePort, r.VirtualHost, r.Status, c.vh, c.status)
		}
	}
}

func TestRouteMatchingRules(t *testing.T) {
	hcm := &hcmv3.HttpConnectionManager{
		UseRemoteAddress: wrapperspb.Bool(true),
		InternalAddressConfig: &hcmv3.HttpConnectionManager_InternalAddressConfig{CidrRanges: []*corev3.CidrRange{
			{AddressPrefix: "10.0.0.0", PrefixLen: wrapperspb.UInt32(8)}}},
	}
	trusted, untrusted := netip.MustParseAddr("10.1.2.3"), netip.MustParseAddr("192.0.2.1")
	marked := http.Header{"X-Test": {"1"}}
	cases := []struct {
		name    string
		req     Request
		cluster string
	}{
		{"internal from a trusted peer", Request{Path: "/", Header: marked, Peer: trusted, Random: 50}, "canary-internal"},
		{"marker from an untrusted peer", Request{Path: "/", Header: marked, Peer: untrusted, Random: 50}, "stable"},
		{"trusted peer forwarding (X-Forwarded-For): not internal", Request{Path: "/", Peer: trusted, Random: 50,
			Header: http.Header{"X-Test": {"1"}, "X-Forwarded-For": {"10.9.9.9"}}}, "stable"},
		{"x-envoy-internal sent by an untrusted client is removed", Request{Path: "/", Peer: untrusted, Random: 50,
			Header: http.Header{"X-Test": {"1"}, "X-Envoy-Internal": {"true"}}}, "stable"},
		{"exact path with method", Request{Method: "POST", Path: "/orders?id=1", Random: 50}, "orders"},
		{"exact path, other method", Request{Method: "GET", Path: "/orders", Random: 50}, "stable"},
		{"regex is a full match on the path without query", Request{Path: "/v12?x=1", Random: 50}, "versioned"},
		{"regex does not match a longer path", Request{Path: "/v12/x", Random: 50}, "stable"},
		{"runtime fraction taken below its numerator", Request{Path: "/", Random: 129}, "thirty"},
		{"weighted pick by random", Request{Path: "/", Random: 85}, "canary"},
	}
	for _, c := range cases {
		c.req.Host = "api.example.com"
		if r := Route(hcm, table(true), nil, c.req); r.Cluster != c.cluster || r.Status != 200 {
			t.Errorf("%s: %+v, want cluster %s", c.name, r, c.cluster)
		}
	}
	// The weighted split over every random value of a 100-wide window is exact.
	counts := map[string]int{}
	for i := uint64(0); i < 100; i++ {
		counts[Route(hcm, table(true), nil, Request{Host: "api.example.com", Path: "/", Random: 100*7 + 30 + i}).Cluster]++
	}
	if counts["stable"]+counts["canary"] != 70 || counts["thirty"] != 30 {
		t.Errorf("fraction and split over 100 values: %v", counts)
	}
	// A chosen cluster that is not usable answers 503.
	if r := Route(hcm, table(true), func(c string) bool { return c != "orders" }, Request{Host: "api.example.com", Method: "POST", Path: "/orders"}); r.Status != 503 {
		t.Errorf("route to an unusable cluster: %+v", r)
	}
}

func TestDecodeRefusesWhatEnvoyRefuses(t *testing.T) {
	good := table(true)
	if err := check(good); err != nil {
		t.Fatalf("a valid route configuration refused: %v", err)
	}
	cases := map[string]func(*routev3.RouteConfiguration){
		"duplicate domain": func(rc *routev3.RouteConfiguration) {
			rc.VirtualHosts[2].Domains = []string{"API.example.com"}
		},
		"weights sum to 0": func(rc *routev3.RouteConfiguration) {
			for _, w := range rc.VirtualHosts[1].Routes[4].GetRoute().GetWeightedClusters().Clusters {
				w.Weight = wrapperspb.UInt32(0)
			}
		},
		"missing required field (virtual host without domains)": func(rc *routev3.RouteConfiguration) {
			rc.VirtualHosts[0].Domains = nil
		},
		"regex over RE2's default program size": func(rc *routev3.RouteConfiguration) {
			rc.VirtualHosts[1].Routes[2].Match.PathSpecifier = &routev3.RouteMatch_SafeRegex{
				SafeRegex: &matcherv3.RegexMatcher{Regex: strings.Repeat("/asdf/.*", 10)}}
		},
		"unknown typed_config": func(rc *routev3.RouteConfiguration) {
			rc.TypedPerFilterConfig = map[string]*anypb.Any{"envoy.filters.http.nope": {TypeUrl: "type.googleapis.com/no.such.Type"}}
		},
	}
	for name, mutate := range cases {
		rc := table(true)
		mutate(rc)
		if err := check(rc); err == nil {
			t.Errorf("%s: accepted", name)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
}
