package xds

import (
	"fmt"
	"net"
	"net/netip"
	"sort"
	"strconv"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/sluice-mesh/sluice/model"
)

// Shape is the kind of xDS client a node is, which decides the resources it gets.
type Shape string

// Client shapes.
const (
	// ShapeEnvoy is an Envoy proxy: socket listeners whose HttpConnectionManager takes
	// its routes by RDS over ADS.
	ShapeEnvoy Shape = "envoy"
	// ShapeGRPC is a proxyless gRPC client: API listeners named by each route host that
	// is not "*" and by the model listener's name, taking routes by RDS over ADS.
	ShapeGRPC Shape = "grpc"
)

// Well-known names used in translated resources.
const (
	// RouterFilterName is the HTTP router filter, always the last HTTP filter.
	RouterFilterName = "envoy.filters.http.router"
	// InternalHeader is the header Envoy sets to "true" for requests from trusted
	// (internal) addresses when use_remote_address is on; the internal-traffic marker is
	// honoured only together with it.
	InternalHeader = "x-envoy-internal"
	// InternalSuffix names the cluster that receives internal traffic:
	// "<canary>-internal", with the canary's endpoints.
	InternalSuffix = "-internal"
	// Locality is the single locality every endpoint is placed in.
	Locality = "sluice"

	http2OptionsKey = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
	hcmFilterName   = "envoy.filters.network.http_connection_manager"
)

// Resources is one client shape's xDS resources, each slice sorted by resource name.
type Resources struct {
	Listeners []*listenerv3.Listener
	Routes    []*routev3.RouteConfiguration
	Clusters  []*clusterv3.Cluster
	Endpoints []*endpointv3.ClusterLoadAssignment
}

// InternalClusterName returns the name of the cluster that receives internal traffic
// meant for cluster canary.
func InternalClusterName(canary string) string { return canary + InternalSuffix }

// Translate turns a snapshot into the resources of one client shape. It is a pure
// function: the same snapshot always gives equal resources, sorted by name. It does not
// run Check; the caller does before serving them.
func Translate(snap *model.Snapshot, shape Shape) (*Resources, error) {
	if snap == nil {
		return nil, fmt.Errorf("xds: nil snapshot")
	}
	if shape != ShapeEnvoy && shape != ShapeGRPC {
		return nil, fmt.Errorf("xds: unknown shape %q", shape)
	}
	res := &Resources{}
	// Clusters and endpoints: every model cluster, plus one internal cluster per
	// internal-traffic target, with that target's endpoints.
	byName := map[string]*model.Cluster{}
	for i := range snap.Clusters {
		byName[snap.Clusters[i].Name] = &snap.Clusters[i]
	}
	internal := map[string]bool{}
	for _, l := range snap.Listeners {
		for _, r := range l.Routes {
			if r.InternalCluster != "" && l.InternalTraffic != nil {
				internal[r.InternalCluster] = true
			}
		}
	}
	emit := func(name string, c *model.Cluster) error {
		cl, err := translateCluster(name, c, shape)
		if err != nil {
			return err
		}
		cla, err := translateEndpoints(name, c)
		if err != nil {
			return err
		}
		res.Clusters = append(res.Clusters, cl)
		res.Endpoints = append(res.Endpoints, cla)
		return nil
	}
	for i := range snap.Clusters {
		if err := emit(snap.Clusters[i].Name, &snap.Clusters[i]); err != nil {
			return nil, err
		}
	}
	for _, canary := range sortedKeys(internal) {
		c, ok := byName[canary]
		if !ok {
			return nil, fmt.Errorf("xds: internal traffic goes to unknown cluster %q", canary)
		}
		name := InternalClusterName(canary)
		if _, dup := byName[name]; dup {
			return nil, fmt.Errorf("xds: cluster %q clashes with the internal cluster of %q", name, canary)
		}
		if err := emit(name, c); err != nil {
			return nil, err
		}
	}

	for i := range snap.Listeners {
		l := &snap.Listeners[i]
		rc, err := translateRoutes(l, byName, shape)
		if err != nil {
			return nil, err
		}
		res.Routes = append(res.Routes, rc)
		switch shape {
		case ShapeEnvoy:
			ln, err := envoyListener(l)
			if err != nil {
				return nil, err
			}
			res.Listeners = append(res.Listeners, ln)
		case ShapeGRPC:
			for _, name := range apiListenerNames(l) {
				ln, err := apiListener(name, l.Name)
				if err != nil {
					return nil, err
				}
				res.Listeners = append(res.Listeners, ln)
			}
		}
	}
	sortResources(res)
	for i := 1; i < len(res.Listeners); i++ {
		if res.Listeners[i].Name == res.Listeners[i-1].Name {
			return nil, fmt.Errorf("xds: two %s listeners named %q", shape, res.Listeners[i].Name)
		}
	}
	return res, nil
}

func sortResources(r *Resources) {
	sort.SliceStable(r.Listeners, func(i, j int) bool { return r.Listeners[i].Name < r.Listeners[j].Name })
	sort.SliceStable(r.Routes, func(i, j int) bool { return r.Routes[i].Name < r.Routes[j].Name })
	sort.SliceStable(r.Clusters, func(i, j int) bool { return r.Clusters[i].Name < r.Clusters[j].Name })
	sort.SliceStable(r.Endpoints, func(i, j int) bool { return r.Endpoints[i].ClusterName < r.Endpoints[j].ClusterName })
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// apiListenerNames returns the names a proxyless client may dial for a listener: every
// route host that is not "*", and the listener's own name, sorted and unique.
func apiListenerNames(l *model.Listener) []string {
	set := map[string]bool{l.Name: true}
	for _, r := range l.Routes {
		for _, h := range r.Hosts {
			if h != "*" && h != "" {
				set[h] = true
			}
		}
	}
	return sortedKeys(set)
}

func adsSource() *corev3.ConfigSource {
	return &corev3.ConfigSource{
		ResourceApiVersion:    corev3.ApiVersion_V3,
		ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
	}
}

func mustAny(m proto.Message) *anypb.Any {
	a, err := anypb.New(m)
	if err != nil {
		panic(err) // only for message types linked into this binary
	}
	return a
}

func routerFilter() *hcmv3.HttpFilter {
	return &hcmv3.HttpFilter{
		Name:       RouterFilterName,
		ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(&routerv3.Router{})},
	}
}

func rds(routeConfig string) *hcmv3.HttpConnectionManager_Rds {
	return &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{ConfigSource: adsSource(), RouteConfigName: routeConfig}}
}

func apiListener(name, routeConfig string) (*listenerv3.Listener, error) {
	hcm := &hcmv3.HttpConnectionManager{
		StatPrefix:     name,
		RouteSpecifier: rds(routeConfig),
		HttpFilters:    []*hcmv3.HttpFilter{routerFilter()},
	}
	return &listenerv3.Listener{
		Name:        name,
		ApiListener: &listenerv3.ApiListener{ApiListener: mustAny(hcm)},
	}, nil
}

func envoyListener(l *model.Listener) (*listenerv3.Listener, error) {
	host, port, err := splitHostPort(l.Address)
	if err != nil {
		return nil, fmt.Errorf("xds: listener %q: %w", l.Name, err)
	}
	hcm := &hcmv3.HttpConnectionManager{
		StatPrefix:       l.Name,
		CodecType:        hcmv3.HttpConnectionManager_AUTO,
		RouteSpecifier:   rds(l.Name),
		HttpFilters:      []*hcmv3.HttpFilter{routerFilter()},
		UseRemoteAddress: wrapperspb.Bool(true),
	}
	if it := l.InternalTraffic; it != nil && len(it.TrustedSources) > 0 {
		cfg := &hcmv3.HttpConnectionManager_InternalAddressConfig{}
		for _, p := range it.TrustedSources {
			cfg.CidrRanges = append(cfg.CidrRanges, &corev3.CidrRange{
				AddressPrefix: p.Addr().String(),
				PrefixLen:     wrapperspb.UInt32(uint32(p.Bits())),
			})
		}
		hcm.InternalAddressConfig = cfg
	}
	if n := l.Limits.MaxHeaderBytes; n > 0 {
		kb := (n + 1023) / 1024
		hcm.MaxRequestHeadersKb = wrapperspb.UInt32(uint32(min(kb, 8192)))
	}
	if d := l.Limits.IdleTimeout; d > 0 {
		hcm.CommonHttpProtocolOptions = &corev3.HttpProtocolOptions{IdleTimeout: durationpb.New(d)}
	}
	if d := l.Limits.ReadTimeout; d > 0 {
		hcm.RequestHeadersTimeout = durationpb.New(d)
	}
	return &listenerv3.Listener{
		Name:    l.Name,
		Address: socketAddress(host, port),
		FilterChains: []*listenerv3.FilterChain{{
			Filters: []*listenerv3.Filter{{
				Name:       hcmFilterName,
				ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(hcm)},
			}},
		}},
	}, nil
}

func socketAddress(host string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address:       host,
		PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
	}}}
}

// splitHostPort parses host:port into an IP literal and a port. "localhost" is
// 127.0.0.1 and an empty host is 0.0.0.0; other names are refused, since Envoy takes
// only IP addresses in listeners and EDS endpoints.
func splitHostPort(addr string) (string, uint32, error) {
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("address %q: %w", addr, err)
	}
	port, err := strconv.ParseUint(p, 10, 16)
	if err != nil {
		return "", 0, fmt.Errorf("address %q: bad port", addr)
	}
	switch h {
	case "":
		h = "0.0.0.0"
	case "localhost":
		h = "127.0.0.1"
	}
	ip, err := netip.ParseAddr(h)
	if err != nil {
		return "", 0, fmt.Errorf("address %q: host must be an IP address (or localhost) for xDS", addr)
	}
	return ip.String(), uint32(port), nil
}

func translateCluster(name string, c *model.Cluster, shape Shape) (*clusterv3.Cluster, error) {
	cl := &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig:     &clusterv3.Cluster_EdsClusterConfig{EdsConfig: adsSource()},
		LbPolicy:             clusterv3.Cluster_ROUND_ROBIN,
	}
	if shape == ShapeGRPC {
		// grpc-go ignores (or rejects) most Envoy-side settings; keep its clusters minimal.
		return cl, nil
	}
	if c.ConnectTimeout > 0 {
		cl.ConnectTimeout = durationpb.New(c.ConnectTimeout)
	}
	if c.Protocol == model.ProtocolH2C {
		cl.TypedExtensionProtocolOptions = map[string]*anypb.Any{
			http2OptionsKey: mustAny(&upstreamhttpv3.HttpProtocolOptions{
				UpstreamProtocolOptions: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_{
					ExplicitHttpConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig{
						ProtocolConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{
							Http2ProtocolOptions: &corev3.Http2ProtocolOptions{},
						},
					},
				},
			}),
		}
	}
	if hc := c.HealthCheck; hc != nil {
		cl.HealthChecks = []*corev3.HealthCheck{{
			Timeout:            durationpb.New(orDefault(hc.Timeout, time.Second)),
			Interval:           durationpb.New(orDefault(hc.Interval, 5*time.Second)),
			HealthyThreshold:   wrapperspb.UInt32(uint32(max(hc.HealthyThreshold, 1))),
			UnhealthyThreshold: wrapperspb.UInt32(uint32(max(hc.UnhealthyThreshold, 1))),
			HealthChecker: &corev3.HealthCheck_HttpHealthCheck_{HttpHealthCheck: &corev3.HealthCheck_HttpHealthCheck{
				Path: orString(hc.Path, "/"),
			}},
		}}
	}
	if o := c.Outlier; o.ConsecutiveFailures > 0 {
		cl.OutlierDetection = &clusterv3.OutlierDetection{
			Consecutive_5Xx:  wrapperspb.UInt32(uint32(o.ConsecutiveFailures)),
			BaseEjectionTime: durationpb.New(orDefault(o.BaseEjectionTime, 30*time.Second)),
		}
	}
	return cl, nil
}

func orDefault(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

func orString(s, def string) string {
	if s != "" {
		return s
	}
	return def
}

func translateEndpoints(name string, c *model.Cluster) (*endpointv3.ClusterLoadAssignment, error) {
	loc := &endpointv3.LocalityLbEndpoints{
		Locality:            &corev3.Locality{Region: Locality},
		LoadBalancingWeight: wrapperspb.UInt32(1),
	}
	for _, e := range c.Endpoints {
		host, port, err := splitHostPort(e.Address)
		if err != nil {
			return nil, fmt.Errorf("xds: cluster %q: %w", c.Name, err)
		}
		loc.LbEndpoints = append(loc.LbEndpoints, &endpointv3.LbEndpoint{
			HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
				Address: socketAddress(host, port),
			}},
			LoadBalancingWeight: wrapperspb.UInt32(uint32(max(e.Weight, 1))),
		})
	}
	return &endpointv3.ClusterLoadAssignment{
		ClusterName: name,
		Endpoints:   []*endpointv3.LocalityLbEndpoints{loc},
	}, nil
}

// translateRoutes builds the listener's RouteConfiguration, named like the listener:
// one virtual host per distinct host (sorted), and within it, for each model route in
// order: internal-traffic routes, header routes, mirror routes with matches, then the
// weighted (or single-cluster) route.
func translateRoutes(l *model.Listener, clusters map[string]*model.Cluster, shape Shape) (*routev3.RouteConfiguration, error) {
	hosts := map[string][]int{}
	for i, r := range l.Routes {
		hs := r.Hosts
		if len(hs) == 0 {
			hs = []string{"*"}
		}
		seen := map[string]bool{}
		for _, h := range hs {
			if !seen[h] {
				seen[h] = true
				hosts[h] = append(hosts[h], i)
			}
		}
	}
	names := make([]string, 0, len(hosts))
	for h := range hosts {
		names = append(names, h)
	}
	sort.Strings(names)
	rc := &routev3.RouteConfiguration{Name: l.Name}
	for _, h := range names {
		vh := &routev3.VirtualHost{Name: h, Domains: []string{h}}
		for _, i := range hosts[h] {
			rs, err := routesFor(l, &l.Routes[i], clusters, shape)
			if err != nil {
				return nil, err
			}
			vh.Routes = append(vh.Routes, rs...)
		}
		rc.VirtualHosts = append(rc.VirtualHosts, vh)
	}
	return rc, nil
}

func routeName(l *model.Listener, r *model.Route, idx int) string {
	if r.Name != "" {
		return r.Name
	}
	return l.Name + "-" + strconv.Itoa(idx)
}

func routesFor(l *model.Listener, r *model.Route, clusters map[string]*model.Cluster, shape Shape) ([]*routev3.Route, error) {
	idx := 0
	for i := range l.Routes {
		if &l.Routes[i] == r {
			idx = i
		}
	}
	name := routeName(l, r, idx)
	prefix := orString(r.PathPrefix, "/")
	var strip []string
	if it := l.InternalTraffic; it != nil {
		seen := map[string]bool{}
		for _, h := range it.Headers {
			if !seen[h.Name] {
				seen[h.Name] = true
				strip = append(strip, h.Name)
			}
		}
		sort.Strings(strip)
	}
	var timeout *durationpb.Duration
	if c := clusters[r.Cluster]; c != nil {
		timeout = durationpb.New(c.RequestTimeout) // 0 disables Envoy's 15 s default
	}
	clusterAction := func(cluster string) *routev3.Route_Route {
		return &routev3.Route_Route{Route: &routev3.RouteAction{
			ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: cluster},
			Timeout:          timeout,
		}}
	}
	mainAction := func() *routev3.RouteAction {
		a := &routev3.RouteAction{Timeout: timeout}
		if r.Split == nil {
			a.ClusterSpecifier = &routev3.RouteAction_Cluster{Cluster: r.Cluster}
			return a
		}
		wc := &routev3.WeightedCluster{}
		for _, w := range r.Split {
			wc.Clusters = append(wc.Clusters, &routev3.WeightedCluster_ClusterWeight{
				Name:   w.Cluster,
				Weight: wrapperspb.UInt32(uint32(max(w.Weight, 0))),
			})
		}
		a.ClusterSpecifier = &routev3.RouteAction_WeightedClusters{WeightedClusters: wc}
		return a
	}
	var out []*routev3.Route

	if r.InternalCluster != "" && l.InternalTraffic != nil {
		for i, h := range l.InternalTraffic.Headers {
			out = append(out, &routev3.Route{
				Name: name + "/internal/" + strconv.Itoa(i),
				Match: &routev3.RouteMatch{
					PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: prefix},
					Headers: []*routev3.HeaderMatcher{
						headerMatcher(model.HeaderMatch{Name: InternalHeader, Value: model.StringMatch{Exact: "true"}}),
						headerMatcher(h),
					},
				},
				Action: clusterAction(InternalClusterName(r.InternalCluster)),
			})
		}
	}
	for _, hr := range r.HeaderRoutes {
		m := &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: prefix}}
		for _, h := range hr.Headers {
			m.Headers = append(m.Headers, headerMatcher(h))
		}
		out = append(out, &routev3.Route{
			Name:                   name + "/header/" + hr.Name,
			Match:                  m,
			Action:                 clusterAction(hr.Cluster),
			RequestHeadersToRemove: strip,
		})
	}
	var allMirrors []*routev3.RouteAction_RequestMirrorPolicy
	for _, mi := range r.Mirrors {
		pol := mirrorPolicy(mi)
		if len(mi.Matches) == 0 {
			allMirrors = append(allMirrors, pol)
			continue
		}
		for j, rm := range mi.Matches {
			a := mainAction()
			a.RequestMirrorPolicies = []*routev3.RouteAction_RequestMirrorPolicy{pol}
			out = append(out, &routev3.Route{
				Name:                   name + "/mirror/" + mi.Name + "/" + strconv.Itoa(j),
				Match:                  requestMatch(rm, prefix),
				Action:                 &routev3.Route_Route{Route: a},
				RequestHeadersToRemove: strip,
			})
		}
	}
	a := mainAction()
	a.RequestMirrorPolicies = allMirrors
	out = append(out, &routev3.Route{
		Name:                   name,
		Match:                  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: prefix}},
		Action:                 &routev3.Route_Route{Route: a},
		RequestHeadersToRemove: strip,
	})
	if shape == ShapeGRPC {
		// grpc-go drops a weight-0 cluster from its view, and taking weight back then
		// fails RPCs ("unknown cluster selected") until the cluster is fetched again.
		// A route right after the main route, with the same prefix, is never matched
		// but keeps every zero-weight leg subscribed; the split itself stays exact.
		for _, w := range r.Split {
			if w.Weight <= 0 {
				out = append(out, &routev3.Route{
					Name:   name + "/keep/" + w.Cluster,
					Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: prefix}},
					Action: clusterAction(w.Cluster),
				})
			}
		}
	}
	return out, nil
}

func mirrorPolicy(m model.Mirror) *routev3.RouteAction_RequestMirrorPolicy {
	return &routev3.RouteAction_RequestMirrorPolicy{
		Cluster: m.Cluster,
		RuntimeFraction: &corev3.RuntimeFractionalPercent{DefaultValue: &typev3.FractionalPercent{
			Numerator:   uint32(min(max(m.Percentage, 0), 100)),
			Denominator: typev3.FractionalPercent_HUNDRED,
		}},
	}
}

func requestMatch(rm model.RequestMatch, prefix string) *routev3.RouteMatch {
	m := &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: prefix}}
	if p := rm.Path; p != nil {
		switch {
		case p.Exact != "":
			m.PathSpecifier = &routev3.RouteMatch_Path{Path: p.Exact}
		case p.Prefix != "":
			m.PathSpecifier = &routev3.RouteMatch_Prefix{Prefix: p.Prefix}
		case p.Regex != "":
			m.PathSpecifier = &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: p.Regex}}
		}
	}
	if rm.Method != nil {
		m.Headers = append(m.Headers, headerMatcher(model.HeaderMatch{Name: ":method", Value: *rm.Method}))
	}
	for _, h := range rm.Headers {
		m.Headers = append(m.Headers, headerMatcher(h))
	}
	return m
}

func headerMatcher(h model.HeaderMatch) *routev3.HeaderMatcher {
	sm := &matcherv3.StringMatcher{}
	switch {
	case h.Value.Regex != "":
		sm.MatchPattern = &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: h.Value.Regex}}
	case h.Value.Prefix != "":
		sm.MatchPattern = &matcherv3.StringMatcher_Prefix{Prefix: h.Value.Prefix}
	default:
		sm.MatchPattern = &matcherv3.StringMatcher_Exact{Exact: h.Value.Exact}
	}
	return &routev3.HeaderMatcher{
		Name:                 h.Name,
		HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: sm},
	}
}
