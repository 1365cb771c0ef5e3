package xds

import (
	"errors"
	"fmt"
	"regexp"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"

	"github.com/sluice-mesh/sluice/internal/re2"
)

// validator is what every generated Envoy message implements.
type validator interface{ ValidateAll() error }

// Check runs Sluice's own consistency checks over one shape's resources, then every
// resource's ValidateAll. ValidateAll alone misses what clients reject: all-zero
// weights, references to missing clusters or route configurations, a missing or
// misplaced router filter, anything inside an api_listener, zero locality weights.
// It returns every problem found, joined, or nil.
func Check(r *Resources) error {
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }

	routes := map[string]*routev3.RouteConfiguration{}
	for _, rc := range r.Routes {
		if _, dup := routes[rc.Name]; dup {
			add("route configuration %q defined twice", rc.Name)
		}
		routes[rc.Name] = rc
	}
	clusters := map[string]*clusterv3.Cluster{}
	for _, c := range r.Clusters {
		if _, dup := clusters[c.Name]; dup {
			add("cluster %q defined twice", c.Name)
		}
		clusters[c.Name] = c
	}
	endpoints := map[string]bool{}
	for _, e := range r.Endpoints {
		if endpoints[e.ClusterName] {
			add("endpoints of cluster %q defined twice", e.ClusterName)
		}
		endpoints[e.ClusterName] = true
		if _, ok := clusters[e.ClusterName]; !ok {
			add("endpoints for unknown cluster %q", e.ClusterName)
		}
		for i, loc := range e.Endpoints {
			if loc.GetLocality() == nil {
				add("cluster %q: locality %d has no locality", e.ClusterName, i)
			}
			if loc.GetLoadBalancingWeight().GetValue() < 1 {
				add("cluster %q: locality %d weight must be >= 1", e.ClusterName, i)
			}
			for j, ep := range loc.LbEndpoints {
				if ep.GetLoadBalancingWeight() != nil && ep.GetLoadBalancingWeight().GetValue() < 1 {
					add("cluster %q: endpoint %d weight must be >= 1", e.ClusterName, j)
				}
			}
		}
	}
	for _, c := range r.Clusters {
		if c.GetType() == clusterv3.Cluster_EDS && !endpoints[c.Name] {
			add("EDS cluster %q has no endpoints resource", c.Name)
		}
		if c.GetType() == clusterv3.Cluster_EDS && c.GetEdsClusterConfig().GetEdsConfig().GetAds() == nil {
			add("EDS cluster %q does not take its endpoints over ADS", c.Name)
		}
	}
	seenListener := map[string]bool{}
	for _, l := range r.Listeners {
		if seenListener[l.Name] {
			add("listener %q defined twice", l.Name)
		}
		seenListener[l.Name] = true
		for _, hcm := range listenerHCMs(l, add) {
			checkHCM(l.Name, hcm, routes, add)
		}
	}
	for _, rc := range r.Routes {
		checkRouteConfig(rc, clusters, add)
	}

	validate := func(kind, name string, v validator) {
		if err := v.ValidateAll(); err != nil {
			add("%s %q: %v", kind, name, err)
		}
	}
	for _, l := range r.Listeners {
		validate("listener", l.Name, l)
		if api := l.GetApiListener().GetApiListener(); api != nil {
			// ValidateAll does not look inside an Any; the HCM is checked on its own.
			hcm := &hcmv3.HttpConnectionManager{}
			if err := api.UnmarshalTo(hcm); err == nil {
				validate("api_listener of", l.Name, hcm)
			}
		}
	}
	for _, rc := range r.Routes {
		validate("route configuration", rc.Name, rc)
	}
	for _, c := range r.Clusters {
		validate("cluster", c.Name, c)
	}
	for _, e := range r.Endpoints {
		validate("endpoints", e.ClusterName, e)
	}
	return errors.Join(errs...)
}

// listenerHCMs returns the HttpConnectionManagers of a listener: the api_listener's, or
// every filter chain's.
func listenerHCMs(l *listenerv3.Listener, add func(string, ...any)) []*hcmv3.HttpConnectionManager {
	var out []*hcmv3.HttpConnectionManager
	if api := l.GetApiListener(); api != nil {
		hcm := &hcmv3.HttpConnectionManager{}
		if err := api.GetApiListener().UnmarshalTo(hcm); err != nil {
			add("listener %q: api_listener is not an HttpConnectionManager: %v", l.Name, err)
			return nil
		}
		return append(out, hcm)
	}
	if len(l.FilterChains) == 0 {
		add("listener %q has no filter chains", l.Name)
	}
	for _, fc := range l.FilterChains {
		for _, f := range fc.Filters {
			hcm := &hcmv3.HttpConnectionManager{}
			if tc := f.GetTypedConfig(); tc != nil && tc.MessageIs(hcm) {
				if err := tc.UnmarshalTo(hcm); err != nil {
					add("listener %q: %v", l.Name, err)
					continue
				}
				out = append(out, hcm)
			}
		}
	}
	if len(out) == 0 {
		add("listener %q has no HttpConnectionManager", l.Name)
	}
	return out
}

func checkHCM(listener string, hcm *hcmv3.HttpConnectionManager, routes map[string]*routev3.RouteConfiguration, add func(string, ...any)) {
	fs := hcm.GetHttpFilters()
	if len(fs) == 0 || fs[len(fs)-1].GetName() != RouterFilterName {
		add("listener %q: the last HTTP filter must be %s", listener, RouterFilterName)
	}
	for i, f := range fs[:max(len(fs)-1, 0)] {
		if f.GetName() == RouterFilterName {
			add("listener %q: router filter at position %d is not last", listener, i)
		}
	}
	switch rs := hcm.GetRouteSpecifier().(type) {
	case *hcmv3.HttpConnectionManager_Rds:
		name := rs.Rds.GetRouteConfigName()
		if _, ok := routes[name]; !ok {
			add("listener %q: route configuration %q not present", listener, name)
		}
		if rs.Rds.GetConfigSource().GetAds() == nil {
			add("listener %q: RDS must come over ADS", listener)
		}
	case *hcmv3.HttpConnectionManager_RouteConfig:
	default:
		add("listener %q: no route configuration", listener)
	}
}

func checkRouteConfig(rc *routev3.RouteConfiguration, clusters map[string]*clusterv3.Cluster, add func(string, ...any)) {
	domains := map[string]bool{}
	for _, vh := range rc.VirtualHosts {
		for _, d := range vh.Domains {
			if domains[d] {
				add("route configuration %q: domain %q in two virtual hosts", rc.Name, d)
			}
			domains[d] = true
		}
		for _, rt := range vh.Routes {
			where := fmt.Sprintf("route configuration %q route %q", rc.Name, rt.Name)
			checkMatch(where, rt.GetMatch(), add)
			a := rt.GetRoute()
			if a == nil {
				continue
			}
			need := func(c string) {
				if _, ok := clusters[c]; !ok {
					add("%s: cluster %q not present", where, c)
				}
			}
			switch cs := a.GetClusterSpecifier().(type) {
			case *routev3.RouteAction_Cluster:
				need(cs.Cluster)
			case *routev3.RouteAction_WeightedClusters:
				if cs.WeightedClusters.GetTotalWeight() != nil {
					add("%s: total_weight must not be set", where)
				}
				total := uint64(0)
				for _, w := range cs.WeightedClusters.GetClusters() {
					need(w.GetName())
					total += uint64(w.GetWeight().GetValue())
				}
				if total == 0 {
					add("%s: weights sum to 0", where)
				}
			default:
				add("%s: no cluster", where)
			}
			for _, m := range a.GetRequestMirrorPolicies() {
				need(m.GetCluster())
			}
		}
	}
}

// MaxRegexProgramSize is Envoy's default re2.max_program_size.error_level: Envoy NACKs a
// route whose safe_regex compiles to a larger RE2 program.
const MaxRegexProgramSize = re2.EnvoyDefaultLimit

// checkMatch compiles every regex the way grpc-go and Envoy's RE2 would reject it.
func checkMatch(where string, m *routev3.RouteMatch, add func(string, ...any)) {
	re := func(r *matcherv3.RegexMatcher) {
		if err := CheckRegex(r.GetRegex()); err != nil {
			add("%s: %v", where, err)
		}
	}
	if sr := m.GetSafeRegex(); sr != nil {
		re(sr)
	}
	for _, h := range m.GetHeaders() {
		if sr := h.GetStringMatch().GetSafeRegex(); sr != nil {
			re(sr)
		}
	}
}

// CheckRegex reports why Envoy (RE2, with the default program size limit) or grpc-go
// would refuse a safe_regex, or nil.
func CheckRegex(expr string) error {
	if _, err := regexp.Compile(expr); err != nil {
		return fmt.Errorf("bad regex %q: %v", expr, err)
	}
	n, err := re2.ProgramSize(expr)
	if err != nil {
		return fmt.Errorf("bad regex %q: %v", expr, err)
	}
	if n > MaxRegexProgramSize {
		return fmt.Errorf("regex %q: RE2 program size of about %d > max program size of %d (Envoy's default re2.max_program_size.error_level)", expr, n, MaxRegexProgramSize)
	}
	return nil
}
