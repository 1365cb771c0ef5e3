package xds

import (
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	mutationv3 "github.com/envoyproxy/go-control-plane/envoy/config/common/mutation_rules/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/sluice-mesh/sluice/model"
)

// MirrorSuffix names the cluster that receives a mirror's copies: "<cluster>-mirror",
// with that cluster's endpoints, so that Envoy's statistics of the mirrored cluster (and
// an analysis over them) never count the copies, as the router's do not.
const MirrorSuffix = "-mirror"

// MirrorClusterName returns the name of the cluster that receives the copies mirrored
// to cluster.
func MirrorClusterName(cluster string) string { return cluster + MirrorSuffix }

// MirrorHeader marks mirrored requests, as the router does.
const MirrorHeader = "x-sluice-mirror"

// maxMirrorRoutes bounds the routes one model route expands to for its conditional
// mirrors (one per combination of mirror matches a request can satisfy at once).
const maxMirrorRoutes = 64

// translateRoutes builds the listener's RouteConfiguration, named like the listener: one
// virtual host per distinct host (lower case, sorted), holding, in listener order, the
// routes of that host. Envoy picks the virtual host by the most specific domain (exact,
// then the longest "*.suffix", then "*"), ignoring the port (ignore_port_in_host_matching),
// and tries only that host's routes; the router follows the same rule. grpc-go matches
// domains the same way but does not ignore the port: for proxyless clients each host
// (but "*" and prefix wildcards) is also a domain with the listener's port, the
// :authority of a client that dialled xds:///HOST:PORT.
func translateRoutes(l *model.Listener, clusters map[string]*model.Cluster, shape Shape) (*routev3.RouteConfiguration, error) {
	hosts := map[string][]int{}
	for i, r := range l.Routes {
		hs := r.Hosts
		if len(hs) == 0 {
			hs = []string{"*"}
		}
		seen := map[string]bool{}
		for _, h := range hs {
			h = strings.ToLower(h)
			if h == "" {
				h = "*"
			}
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
	rc := &routev3.RouteConfiguration{Name: l.Name, IgnorePortInHostMatching: shape == ShapeEnvoy}
	port := listenerPort(l)
	for _, h := range names {
		vh := &routev3.VirtualHost{Name: h, Domains: []string{h}}
		if _, taken := hosts[h+":"+port]; shape == ShapeGRPC && port != "" && withPort(h) && !taken {
			vh.Domains = append(vh.Domains, h+":"+port)
		}
		for _, i := range hosts[h] {
			rs, err := routesFor(l, i, clusters, shape)
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

// cond is a conjunction of request conditions, turned into a RouteMatch by match.
type cond struct {
	prefix   string // path prefix ("/" for all)
	exact    string // exact path ("" for none)
	regexes  []string
	headers  []*routev3.HeaderMatcher
	fraction *corev3.RuntimeFractionalPercent
}

// and returns the conjunction of c and a model request match, and false when no request
// can satisfy both.
func (c cond) and(rm model.RequestMatch) (cond, bool) {
	out := c
	out.regexes = append([]string(nil), c.regexes...)
	out.headers = append([]*routev3.HeaderMatcher(nil), c.headers...)
	if p := rm.Path; p != nil {
		switch {
		case p.Exact != "":
			if out.exact != "" && out.exact != p.Exact {
				return out, false
			}
			out.exact = p.Exact
		case p.Prefix != "":
			switch {
			case strings.HasPrefix(p.Prefix, out.prefix):
				out.prefix = p.Prefix
			case !strings.HasPrefix(out.prefix, p.Prefix):
				return out, false
			}
		case p.Regex != "":
			out.regexes = append(out.regexes, p.Regex)
		}
	}
	if rm.Method != nil {
		out.headers = append(out.headers, headerMatcher(model.HeaderMatch{Name: ":method", Value: *rm.Method}))
	}
	for _, h := range rm.Headers {
		out.headers = append(out.headers, headerMatcher(h))
	}
	if out.exact != "" {
		if !strings.HasPrefix(out.exact, out.prefix) {
			return out, false
		}
		for _, re := range out.regexes {
			if x, err := regexp.Compile(`^(?:` + re + `)$`); err != nil || !x.MatchString(out.exact) {
				return out, false
			}
		}
		out.regexes = nil
	}
	return out, true
}

// match renders the conditions: one path specifier, the rest as ":path" header matchers
// (which see the query string too, so a regex there allows one).
func (c cond) match() *routev3.RouteMatch {
	m := &routev3.RouteMatch{Headers: append([]*routev3.HeaderMatcher(nil), c.headers...), RuntimeFraction: c.fraction}
	pathHeader := func(sm *matcherv3.StringMatcher) *routev3.HeaderMatcher {
		return &routev3.HeaderMatcher{Name: ":path", HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: sm}}
	}
	switch {
	case c.exact != "":
		m.PathSpecifier = &routev3.RouteMatch_Path{Path: c.exact}
	case len(c.regexes) > 0:
		m.PathSpecifier = &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: c.regexes[0]}}
		for _, re := range c.regexes[1:] {
			m.Headers = append(m.Headers, pathHeader(&matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{
				SafeRegex: &matcherv3.RegexMatcher{Regex: `(?:` + re + `)(?:\?.*)?`}}}))
		}
		if c.prefix != "/" {
			m.Headers = append(m.Headers, pathHeader(&matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: c.prefix}}))
		}
	default:
		m.PathSpecifier = &routev3.RouteMatch_Prefix{Prefix: c.prefix}
	}
	return m
}

// decision is one way a request on a model route can be decided: its conditions, and
// the route action (without mirrors) it gets.
type decision struct {
	name   string
	when   cond
	action *routev3.RouteAction
	strip  bool // remove the internal-traffic marker before forwarding
}

// variant is one set of conditional mirrors a request satisfies at once.
type variant struct {
	name     string
	matches  []model.RequestMatch
	policies []*routev3.RouteAction_RequestMirrorPolicy
}

// routesFor turns model route idx into Envoy routes, in the order the router decides:
// internal traffic (marker from a trusted source), header routes, then the split. Every
// route carries the route's mirrors; conditional mirrors multiply the routes, one per
// combination of mirror matches, largest first, so that a request gets every mirror
// whose match it satisfies, as on the router.
func routesFor(l *model.Listener, idx int, clusters map[string]*model.Cluster, shape Shape) ([]*routev3.Route, error) {
	r := &l.Routes[idx]
	name := routeName(l, r, idx)
	base := cond{prefix: orString(r.PathPrefix, "/")}
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
	timeoutOf := func(cluster string) time.Duration {
		if c := clusters[cluster]; c != nil {
			return c.RequestTimeout
		}
		return 0
	}
	single := func(cluster string) *routev3.RouteAction {
		a := &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: cluster}}
		setTimeout(a, timeoutOf(cluster), shape)
		return a
	}

	var ds []decision
	if it := l.InternalTraffic; r.InternalCluster != "" && it != nil && len(it.TrustedSources) > 0 {
		for i, h := range it.Headers {
			when := base
			when.headers = []*routev3.HeaderMatcher{
				headerMatcher(model.HeaderMatch{Name: InternalHeader, Value: model.StringMatch{Exact: "true"}}),
				headerMatcher(h),
			}
			a := single(InternalClusterName(r.InternalCluster))
			setTimeout(a, timeoutOf(r.InternalCluster), shape)
			ds = append(ds, decision{name: name + "/internal/" + strconv.Itoa(i), when: when, action: a})
		}
	}
	for _, hr := range r.HeaderRoutes {
		when := base
		for _, h := range hr.Headers {
			when.headers = append(when.headers, headerMatcher(h))
		}
		ds = append(ds, decision{name: name + "/header/" + hr.Name, when: when, action: single(hr.Cluster), strip: true})
	}
	// Sticky sessions are not sent: the router's cookie carries a signed bucket, which
	// Envoy cannot verify, and a cookie Envoy matched as sent would let a client pin
	// itself to the canary (config warns; README "What Envoy does with Sluice's routes").
	ds = append(ds, splitDecisions(name, base, r, timeoutOf, shape)...)

	variants, err := mirrorVariants(r, shape)
	if err != nil {
		return nil, fmt.Errorf("xds: listener %q route %q: %w", l.Name, name, err)
	}
	var out []*routev3.Route
	for _, d := range ds {
		// The legs of a split by runtime fraction must stay together per variant.
		for _, v := range variants {
			when := d.when
			ok := true
			for _, rm := range v.matches {
				if when, ok = when.and(rm); !ok {
					break
				}
			}
			if !ok {
				continue
			}
			a := cloneAction(d.action)
			a.RequestMirrorPolicies = v.policies
			rt := &routev3.Route{
				Name:   d.name + v.name,
				Match:  when.match(),
				Action: &routev3.Route_Route{Route: a},
			}
			if d.strip {
				rt.RequestHeadersToRemove = strip
			}
			out = append(out, rt)
		}
	}
	if len(out) > maxMirrorRoutes*len(ds) {
		return nil, fmt.Errorf("xds: listener %q route %q: its mirrors expand to %d routes; use fewer conditional mirrors", l.Name, name, len(out))
	}
	if shape == ShapeGRPC {
		// grpc-go drops a weight-0 cluster from its view, and taking weight back then
		// fails RPCs ("unknown cluster selected") until the cluster is fetched again.
		// A route after the split, with the same prefix, is never matched but keeps
		// every zero-weight leg subscribed; the split itself stays exact.
		for _, w := range r.Split {
			if w.Weight <= 0 {
				out = append(out, &routev3.Route{
					Name:   name + "/keep/" + w.Cluster,
					Match:  base.match(),
					Action: &routev3.Route_Route{Route: single(w.Cluster)},
				})
			}
		}
	}
	return out, nil
}

// splitDecisions returns the routes of the split itself. Each request gets the timeout
// of the cluster it is sent to, as on the router: legs with equal timeouts share one
// weighted_clusters route; two legs with different timeouts become two routes, the first
// taken with its weight's probability (runtime_fraction) and the second taking the rest.
// More than two legs with different timeouts get the longest (none beats any).
func splitDecisions(name string, base cond, r *model.Route, timeoutOf func(string) time.Duration, shape Shape) []decision {
	if r.Split == nil {
		a := &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: r.Cluster}}
		setTimeout(a, timeoutOf(r.Cluster), shape)
		return []decision{{name: name, when: base, action: a, strip: true}}
	}
	same := true
	longest := timeoutOf(r.Split[0].Cluster)
	for _, w := range r.Split[1:] {
		t := timeoutOf(w.Cluster)
		if t != timeoutOf(r.Split[0].Cluster) {
			same = false
		}
		if t == 0 || (longest != 0 && t > longest) {
			longest = t
		}
	}
	if !same && len(r.Split) == 2 {
		first, second := r.Split[0], r.Split[1]
		f := splitFraction(first.Weight, shape)
		var out []decision
		if f != nil {
			when := base
			when.fraction = f
			a := &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: first.Cluster}}
			setTimeout(a, timeoutOf(first.Cluster), shape)
			out = append(out, decision{name: name + "/split/" + first.Cluster, when: when, action: a, strip: true})
		}
		a := &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: second.Cluster}}
		setTimeout(a, timeoutOf(second.Cluster), shape)
		return append(out, decision{name: name, when: base, action: a, strip: true})
	}
	wc := &routev3.WeightedCluster{}
	for _, w := range r.Split {
		wc.Clusters = append(wc.Clusters, &routev3.WeightedCluster_ClusterWeight{
			Name:   w.Cluster,
			Weight: wrapperspb.UInt32(uint32(max(w.Weight, 0))),
		})
	}
	a := &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_WeightedClusters{WeightedClusters: wc}}
	setTimeout(a, longest, shape)
	return []decision{{name: name, when: base, action: a, strip: true}}
}

// splitFraction is the runtime fraction that takes a leg of weight w (percent), or nil
// when the leg takes nothing. Envoy draws one random value per request, compared as
// value % 100 < numerator; grpc-go draws one per route in [0, 1e6) and matches when it
// is <= the numerator, so w% there is w*10000-1.
func splitFraction(w int, shape Shape) *corev3.RuntimeFractionalPercent {
	if w <= 0 {
		return nil
	}
	fp := &typev3.FractionalPercent{Numerator: uint32(min(w, 100)), Denominator: typev3.FractionalPercent_HUNDRED}
	if shape == ShapeGRPC {
		fp = &typev3.FractionalPercent{Numerator: uint32(min(w, 100)*10000 - 1), Denominator: typev3.FractionalPercent_MILLION}
	}
	return &corev3.RuntimeFractionalPercent{DefaultValue: fp}
}

// setTimeout sets a route's upstream timeout: Envoy's timeout (0 disables its 15 s
// default), or, for proxyless gRPC, max_stream_duration (grpc-go ignores timeout).
func setTimeout(a *routev3.RouteAction, d time.Duration, shape Shape) {
	if shape == ShapeGRPC {
		if d > 0 {
			a.MaxStreamDuration = &routev3.RouteAction_MaxStreamDuration{MaxStreamDuration: durationpb.New(d)}
		}
		return
	}
	a.Timeout = durationpb.New(d)
}

func cloneAction(a *routev3.RouteAction) *routev3.RouteAction {
	return proto.Clone(a).(*routev3.RouteAction)
}

// mirrorVariants returns the mirror combinations of a route, largest first, ending with
// the one of no conditional mirror; every variant carries the unconditional mirrors.
// Proxyless clients do not mirror: one empty variant.
func mirrorVariants(r *model.Route, shape Shape) ([]variant, error) {
	if shape != ShapeEnvoy || len(r.Mirrors) == 0 {
		return []variant{{}}, nil
	}
	var always []*routev3.RouteAction_RequestMirrorPolicy
	var conditional []model.Mirror
	for _, m := range r.Mirrors {
		if len(m.Matches) == 0 {
			always = append(always, mirrorPolicy(m))
		} else {
			conditional = append(conditional, m)
		}
	}
	if len(conditional) > 6 {
		return nil, fmt.Errorf("%d mirrors with matches on one route; at most 6", len(conditional))
	}
	n := len(conditional)
	subsets := make([]int, 0, 1<<n)
	for s := 1; s < 1<<n; s++ {
		subsets = append(subsets, s)
	}
	sort.SliceStable(subsets, func(i, j int) bool { return popcount(subsets[i]) > popcount(subsets[j]) })
	var out []variant
	for _, s := range subsets {
		// every combination of one match per mirror in s
		combos := []variant{{}}
		for i, m := range conditional {
			if s&(1<<i) == 0 {
				continue
			}
			var next []variant
			for _, c := range combos {
				for j, rm := range m.Matches {
					next = append(next, variant{
						name:     c.name + "/mirror/" + m.Name + "/" + strconv.Itoa(j),
						matches:  append(append([]model.RequestMatch(nil), c.matches...), rm),
						policies: append(append([]*routev3.RouteAction_RequestMirrorPolicy(nil), c.policies...), mirrorPolicy(m)),
					})
				}
			}
			combos = next
			if len(combos) > maxMirrorRoutes {
				return nil, fmt.Errorf("mirror matches expand to more than %d routes", maxMirrorRoutes)
			}
		}
		for _, c := range combos {
			c.policies = append(c.policies, always...)
			out = append(out, c)
		}
		if len(out) > maxMirrorRoutes {
			return nil, fmt.Errorf("mirror matches expand to more than %d routes", maxMirrorRoutes)
		}
	}
	return append(out, variant{policies: always}), nil
}

func popcount(x int) int {
	n := 0
	for ; x != 0; x &= x - 1 {
		n++
	}
	return n
}

// mirrorPolicy copies Percentage% of the requests to the mirror's own cluster, with the
// Host header unchanged (no "-shadow" suffix) and marked as a mirror like the router's.
func mirrorPolicy(m model.Mirror) *routev3.RouteAction_RequestMirrorPolicy {
	return &routev3.RouteAction_RequestMirrorPolicy{
		Cluster: MirrorClusterName(m.Cluster),
		RuntimeFraction: &corev3.RuntimeFractionalPercent{DefaultValue: &typev3.FractionalPercent{
			Numerator:   uint32(min(max(m.Percentage, 0), 100)),
			Denominator: typev3.FractionalPercent_HUNDRED,
		}},
		DisableShadowHostSuffixAppend: true,
		RequestHeadersMutations: []*mutationv3.HeaderMutation{{Action: &mutationv3.HeaderMutation_Append{Append: &corev3.HeaderValueOption{
			Header:       &corev3.HeaderValue{Key: MirrorHeader, Value: "1"},
			AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
		}}}},
	}
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
