package xds

import (
	"fmt"
	"net"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
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
	internal, mirrored := map[string]bool{}, map[string]bool{}
	for _, l := range snap.Listeners {
		for _, r := range l.Routes {
			if r.InternalCluster != "" && l.InternalTraffic != nil && len(l.InternalTraffic.TrustedSources) > 0 {
				internal[r.InternalCluster] = true
			}
			for _, m := range r.Mirrors {
				if shape == ShapeEnvoy { // proxyless clients do not mirror
					mirrored[m.Cluster] = true
				}
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
	// Clusters of their own for internal traffic and for mirror copies, with the
	// endpoints of the cluster they stand for, keep that traffic out of its statistics.
	for _, extra := range []struct {
		targets map[string]bool
		name    func(string) string
		what    string
	}{{internal, InternalClusterName, "internal traffic"}, {mirrored, MirrorClusterName, "mirror"}} {
		for _, target := range sortedKeys(extra.targets) {
			c, ok := byName[target]
			if !ok {
				return nil, fmt.Errorf("xds: %s goes to unknown cluster %q", extra.what, target)
			}
			name := extra.name(target)
			if _, dup := byName[name]; dup {
				return nil, fmt.Errorf("xds: cluster %q clashes with the %s cluster of %q", name, extra.what, target)
			}
			if err := emit(name, c); err != nil {
				return nil, err
			}
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
	for i := 1; i < len(res.Clusters); i++ {
		if res.Clusters[i].Name == res.Clusters[i-1].Name {
			return nil, fmt.Errorf("xds: two clusters named %q", res.Clusters[i].Name)
		}
	}
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
// route host that is not "*", and the listener's own name, each also with the
// listener's port (xds:///NAME:PORT, as clients that dialled NAME:PORT by DNS keep doing;
// the router and Envoy ignore the port), sorted and unique.
func apiListenerNames(l *model.Listener) []string {
	set := map[string]bool{l.Name: true}
	for _, r := range l.Routes {
		for _, h := range r.Hosts {
			if h != "*" && h != "" {
				set[h] = true
			}
		}
	}
	if port := listenerPort(l); port != "" {
		for _, name := range sortedKeys(set) {
			if withPort(name) {
				set[name+":"+port] = true
			}
		}
	}
	return sortedKeys(set)
}

// listenerPort returns the port of the listener's address, "" when it has none (or 0).
func listenerPort(l *model.Listener) string {
	_, port, err := net.SplitHostPort(l.Address)
	if err != nil || port == "0" {
		return ""
	}
	return port
}

// withPort reports whether a name or host pattern gets a ":PORT" variant: not "*", not
// a prefix wildcard ("www.*" already matches "www.example.com:PORT"), no port already.
func withPort(h string) bool {
	return h != "*" && !strings.HasSuffix(h, "*") && !strings.Contains(h, ":")
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
		// WebSocket, as the router passes Upgrade through (Envoy answers 403 otherwise).
		UpgradeConfigs: []*hcmv3.HttpConnectionManager_UpgradeConfig{{UpgradeType: "websocket"}},
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
	// Panic routing as on the router: only when no endpoint is healthy is every endpoint
	// used (Envoy's threshold is an integer percentage; 1% is that for up to 100
	// endpoints, where Envoy's default 50% would spread traffic to unhealthy ones).
	cl.CommonLbConfig = &clusterv3.Cluster_CommonLbConfig{HealthyPanicThreshold: &typev3.Percent{Value: 1}}
	if hc := c.HealthCheck; hc != nil {
		interval := orDefault(hc.Interval, 5*time.Second)
		cl.HealthChecks = []*corev3.HealthCheck{{
			Timeout:            durationpb.New(orDefault(hc.Timeout, min(interval, 2*time.Second))),
			Interval:           durationpb.New(interval),
			HealthyThreshold:   wrapperspb.UInt32(uint32(max(hc.HealthyThreshold, 1))),
			UnhealthyThreshold: wrapperspb.UInt32(uint32(orInt(hc.UnhealthyThreshold, 2))),
			// The router probes every interval whether or not traffic flows; Envoy's
			// default is every 60 s for a cluster without traffic.
			NoTrafficInterval:        durationpb.New(interval),
			NoTrafficHealthyInterval: durationpb.New(interval),
			HealthChecker: &corev3.HealthCheck_HttpHealthCheck_{HttpHealthCheck: &corev3.HealthCheck_HttpHealthCheck{
				Path: orString(hc.Path, "/"),
				// 2xx and 3xx are healthy, as on the router (Envoy's default: 200 only).
				ExpectedStatuses: []*typev3.Int64Range{{Start: 200, End: 400}},
				RequestHeadersToAdd: []*corev3.HeaderValueOption{{
					Header:       &corev3.HeaderValue{Key: "user-agent", Value: "sluice-health-check"},
					AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
				}},
			}},
		}}
	}
	if o := c.Outlier; o.ConsecutiveFailures > 0 {
		base := orDefault(o.BaseEjectionTime, 30*time.Second)
		cl.OutlierDetection = &clusterv3.OutlierDetection{
			Consecutive_5Xx:  wrapperspb.UInt32(uint32(o.ConsecutiveFailures)),
			BaseEjectionTime: durationpb.New(base),
			// The router caps an endpoint's ejection at 16 times the base.
			MaxEjectionTime: durationpb.New(16 * base),
			// Every endpoint may be ejected, as on the router (Envoy's default 10% never
			// ejects one of fewer than 10 endpoints); panic routing then uses them all.
			MaxEjectionPercent: wrapperspb.UInt32(100),
			// The router ejects on consecutive failures only.
			EnforcingSuccessRate: wrapperspb.UInt32(0),
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

func orInt(n, def int) int {
	if n > 0 {
		return n
	}
	return def
}

func orString(s, def string) string {
	if s != "" {
		return s
	}
	return def
}

// translateEndpoints returns a cluster's ClusterLoadAssignment: one locality holding
// every endpoint, a draining one with health status DRAINING (Envoy and grpc-go send it
// no new requests, and let those in flight finish). A cluster with no endpoint gets an
// assignment with no locality: Envoy then answers 503 (no healthy upstream) and grpc-go
// fails the cluster's RPCs with UNAVAILABLE, as the router answers 503.
func translateEndpoints(name string, c *model.Cluster) (*endpointv3.ClusterLoadAssignment, error) {
	cla := &endpointv3.ClusterLoadAssignment{ClusterName: name}
	if len(c.Endpoints) == 0 {
		return cla, nil
	}
	loc := &endpointv3.LocalityLbEndpoints{
		Locality:            &corev3.Locality{Region: Locality},
		LoadBalancingWeight: wrapperspb.UInt32(1),
	}
	for _, e := range c.Endpoints {
		host, port, err := splitHostPort(e.Address)
		if err != nil {
			return nil, fmt.Errorf("xds: cluster %q: %w", c.Name, err)
		}
		lb := &endpointv3.LbEndpoint{
			HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
				Address: socketAddress(host, port),
				// Health checks carry the endpoint's address as Host, as the router's do
				// (Envoy's default is the cluster name).
				HealthCheckConfig: healthHost(c, e.Address),
			}},
			LoadBalancingWeight: wrapperspb.UInt32(uint32(max(e.Weight, 1))),
		}
		if e.Draining {
			lb.HealthStatus = corev3.HealthStatus_DRAINING
		}
		loc.LbEndpoints = append(loc.LbEndpoints, lb)
	}
	cla.Endpoints = []*endpointv3.LocalityLbEndpoints{loc}
	return cla, nil
}

func healthHost(c *model.Cluster, addr string) *endpointv3.Endpoint_HealthCheckConfig {
	if c.HealthCheck == nil {
		return nil
	}
	return &endpointv3.Endpoint_HealthCheckConfig{Hostname: addr}
}
