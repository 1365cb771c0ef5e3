package xdstest

import (
	"net"
	"net/http"
	"net/netip"
	"regexp"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
)

// Request is one HTTP request as an Envoy listener receives it.
type Request struct {
	Host   string // the Host header (:authority), port included when the client sent one
	Method string // "GET" when empty
	Path   string // the :path, query included; "/" when empty
	Header http.Header
	// Peer is the downstream connection's remote address (Envoy's use_remote_address).
	Peer netip.Addr
	// Random is the request's random value, which picks the weighted cluster, decides
	// runtime fractions and mirror percentages (Envoy draws one per stream).
	Random uint64
}

// Result is what Envoy does with a request.
type Result struct {
	// Status is 200 when the request is forwarded to Cluster, 404 when no virtual host or
	// route matches, 503 when the chosen cluster is absent or still warming (and, for
	// Client.Match, when it has no endpoint: Envoy's "no healthy upstream").
	Status      int
	VirtualHost string
	Route       string
	Cluster     string
	// Timeout is the route's timeout (0: none); Envoy's default is 15 s when unset.
	Timeout time.Duration
	// Mirrors are the clusters that receive a copy.
	Mirrors []string
	// Internal reports that Envoy marked the request internal (x-envoy-internal: true).
	Internal bool
	// ResponseHeaders are the headers the route adds to the response (Set-Cookie…).
	ResponseHeaders http.Header
}

// Usable tells whether a cluster can take traffic.
type Usable func(cluster string) bool

// Route decides a request the way Envoy's HTTP connection manager and router do, from
// their documented semantics:
//
//   - with use_remote_address, a request is internal when it carries no
//     X-Forwarded-For and its peer is in internal_address_config (no address is
//     internal by default since Envoy 1.33); x-envoy-internal is then set to "true",
//     and removed from any other request;
//   - the Host header is lower-cased and, with the route configuration's
//     ignore_port_in_host_matching or the connection manager's strip_any_host_port,
//     its port is dropped; the virtual host is the one with an exact domain, else the
//     longest suffix wildcard ("*.example.com", which needs at least one character for
//     the "*"), else the longest prefix wildcard ("example.*"), else "*";
//   - routes are tried in order: path (prefix, exact path without the query, or
//     safe_regex fully matching the path without the query), every header matcher, and
//     the runtime fraction (Random % denominator < numerator); the first match decides,
//     and no other virtual host is tried (404);
//   - the cluster is the route's, or the weighted cluster at Random % total weight;
//     a cluster that is not usable answers 503.
func Route(hcm *hcmv3.HttpConnectionManager, rc *routev3.RouteConfiguration, usable Usable, req Request) Result {
	h := req.Header.Clone()
	if h == nil {
		h = http.Header{}
	}
	res := Result{Status: http.StatusNotFound}
	if hcm.GetUseRemoteAddress().GetValue() {
		res.Internal = h.Get("X-Forwarded-For") == "" && internalPeer(hcm.GetInternalAddressConfig(), req.Peer)
		if res.Internal {
			h.Set("X-Envoy-Internal", "true")
		} else {
			h.Del("X-Envoy-Internal")
		}
	}
	host := strings.ToLower(req.Host)
	if rc.GetIgnorePortInHostMatching() || hcm.GetStripAnyHostPort() {
		host = stripPort(host)
	}
	vh := virtualHost(rc, host)
	if vh == nil {
		return res
	}
	res.VirtualHost = vh.GetName()
	method := req.Method
	if method == "" {
		method = http.MethodGet
	}
	path := req.Path
	if path == "" {
		path = "/"
	}
	pseudo := map[string]string{":method": method, ":path": path, ":authority": req.Host, ":scheme": "http"}
	for _, r := range vh.GetRoutes() {
		if !matchRoute(r.GetMatch(), path, h, pseudo, req.Random) {
			continue
		}
		res.Route = r.GetName()
		a := r.GetRoute()
		if a == nil {
			res.Status = http.StatusOK // a direct response or redirect: not used by Sluice
			return res
		}
		res.Timeout = 15 * time.Second
		if a.GetTimeout() != nil {
			res.Timeout = a.GetTimeout().AsDuration()
		}
		res.ResponseHeaders = http.Header{}
		addHeaders(res.ResponseHeaders, r.GetResponseHeadersToAdd())
		switch {
		case a.GetCluster() != "":
			res.Cluster = a.GetCluster()
		case a.GetWeightedClusters() != nil:
			total := uint64(0)
			for _, w := range a.GetWeightedClusters().GetClusters() {
				total += uint64(w.GetWeight().GetValue())
			}
			if total > 0 {
				pick, end := req.Random%total, uint64(0)
				for _, w := range a.GetWeightedClusters().GetClusters() {
					end += uint64(w.GetWeight().GetValue())
					if pick < end {
						res.Cluster = w.GetName()
						addHeaders(res.ResponseHeaders, w.GetResponseHeadersToAdd())
						break
					}
				}
			}
		}
		for _, m := range a.GetRequestMirrorPolicies() {
			if f := m.GetRuntimeFraction(); f == nil || fraction(f.GetDefaultValue(), req.Random) {
				res.Mirrors = append(res.Mirrors, m.GetCluster())
			}
		}
		res.Status = http.StatusOK
		if res.Cluster == "" || (usable != nil && !usable(res.Cluster)) {
			res.Status = http.StatusServiceUnavailable
		}
		return res
	}
	return res
}

// Match decides a request received by the listener named listener, with the client's
// current routes and clusters, and counts a 503 for a cluster it does not hold. A
// cluster it holds without any endpoint answers 503 too (Envoy's "no healthy upstream",
// not counted: that is the configuration, not a push out of order). An unknown or
// warming listener answers 404 (Envoy would refuse the connection).
func (c *Client) Match(listener string, req Request) Result {
	c.mu.Lock()
	defer c.mu.Unlock()
	ls := c.listeners[listener]
	if ls == nil || ls.active == nil {
		return Result{Status: http.StatusNotFound}
	}
	res := Route(ls.active.hcm, c.routes[ls.active.routeConfig()], func(n string) bool { return c.usable(n) == "" }, req)
	switch {
	case res.Status == http.StatusServiceUnavailable:
		c.stats.Served503++
	case res.Status == http.StatusOK && res.Cluster != "" && !hasEndpoints(c.clusters[res.Cluster].active.endpoints):
		res.Status = http.StatusServiceUnavailable
	}
	return res
}

// hasEndpoints reports whether a load assignment holds at least one endpoint.
func hasEndpoints(cla *endpointv3.ClusterLoadAssignment) bool {
	for _, l := range cla.GetEndpoints() {
		if len(l.GetLbEndpoints()) > 0 {
			return true
		}
	}
	return false
}

func addHeaders(dst http.Header, hs []*corev3.HeaderValueOption) {
	for _, o := range hs {
		dst.Add(o.GetHeader().GetKey(), o.GetHeader().GetValue())
	}
}

func internalPeer(cfg *hcmv3.HttpConnectionManager_InternalAddressConfig, peer netip.Addr) bool {
	if !peer.IsValid() {
		return false
	}
	for _, r := range cfg.GetCidrRanges() {
		a, err := netip.ParseAddr(r.GetAddressPrefix())
		if err != nil {
			continue
		}
		if p, err := a.Prefix(int(r.GetPrefixLen().GetValue())); err == nil && p.Contains(peer.Unmap()) {
			return true
		}
	}
	return false
}

func stripPort(host string) string {
	if h, _, err := net.SplitHostPort(host); err == nil {
		if strings.Contains(h, ":") {
			return "[" + h + "]"
		}
		return h
	}
	return host
}

// virtualHost picks the virtual host for host (already lower case).
func virtualHost(rc *routev3.RouteConfiguration, host string) *routev3.VirtualHost {
	var suffix, prefix, star *routev3.VirtualHost
	suffixLen, prefixLen := -1, -1
	for _, vh := range rc.GetVirtualHosts() {
		for _, d := range vh.GetDomains() {
			d = strings.ToLower(d)
			switch {
			case d == "*":
				if star == nil {
					star = vh
				}
			case strings.HasPrefix(d, "*"):
				s := d[1:]
				if len(host) > len(s) && strings.HasSuffix(host, s) && len(s) > suffixLen {
					suffix, suffixLen = vh, len(s)
				}
			case strings.HasSuffix(d, "*"):
				p := d[:len(d)-1]
				if len(host) > len(p) && strings.HasPrefix(host, p) && len(p) > prefixLen {
					prefix, prefixLen = vh, len(p)
				}
			case d == host:
				return vh
			}
		}
	}
	switch {
	case suffix != nil:
		return suffix
	case prefix != nil:
		return prefix
	}
	return star
}

func matchRoute(m *routev3.RouteMatch, path string, h http.Header, pseudo map[string]string, random uint64) bool {
	p := path
	if i := strings.IndexByte(p, '?'); i >= 0 {
		p = p[:i]
	}
	cs := m.GetCaseSensitive() == nil || m.GetCaseSensitive().GetValue()
	fold := func(s string) string {
		if cs {
			return s
		}
		return strings.ToLower(s)
	}
	switch ps := m.GetPathSpecifier().(type) {
	case *routev3.RouteMatch_Prefix:
		if !strings.HasPrefix(fold(path), fold(ps.Prefix)) {
			return false
		}
	case *routev3.RouteMatch_Path:
		if fold(p) != fold(ps.Path) {
			return false
		}
	case *routev3.RouteMatch_SafeRegex:
		if !fullMatch(ps.SafeRegex.GetRegex(), p) {
			return false
		}
	default:
		return false
	}
	for _, hm := range m.GetHeaders() {
		if !matchHeader(hm, h, pseudo) {
			return false
		}
	}
	if f := m.GetRuntimeFraction(); f != nil && !fraction(f.GetDefaultValue(), random) {
		return false
	}
	return true
}

func fraction(f *typev3.FractionalPercent, random uint64) bool {
	d := uint64(100)
	switch f.GetDenominator() {
	case typev3.FractionalPercent_TEN_THOUSAND:
		d = 10000
	case typev3.FractionalPercent_MILLION:
		d = 1000000
	}
	return random%d < uint64(f.GetNumerator())
}

// matchHeader applies one HeaderMatcher: several values of a header are joined with ","
// as Envoy does; a missing header matches nothing (present_match: false and
// invert_match aside).
func matchHeader(hm *routev3.HeaderMatcher, h http.Header, pseudo map[string]string) bool {
	name := strings.ToLower(hm.GetName())
	var value string
	var present bool
	if v, ok := pseudo[name]; ok {
		value, present = v, true
	} else if vs := h.Values(name); len(vs) > 0 {
		value, present = strings.Join(vs, ","), true
	}
	var ok bool
	switch spec := hm.GetHeaderMatchSpecifier().(type) {
	case *routev3.HeaderMatcher_PresentMatch:
		ok = present == spec.PresentMatch
		if hm.GetInvertMatch() {
			ok = !ok
		}
		return ok
	case *routev3.HeaderMatcher_StringMatch:
		if !present && !hm.GetTreatMissingHeaderAsEmpty() {
			return false // a missing header never matches (Sluice sends no invert_match)
		}
		ok = matchString(spec.StringMatch, value)
	case *routev3.HeaderMatcher_ExactMatch:
		ok = present && value == spec.ExactMatch
	case *routev3.HeaderMatcher_PrefixMatch:
		ok = present && strings.HasPrefix(value, spec.PrefixMatch)
	case *routev3.HeaderMatcher_SafeRegexMatch:
		ok = present && fullMatch(spec.SafeRegexMatch.GetRegex(), value)
	case nil:
		ok = present
	}
	if hm.GetInvertMatch() {
		return present && !ok
	}
	return ok
}

func matchString(sm *matcherv3.StringMatcher, v string) bool {
	if sm.GetIgnoreCase() {
		v = strings.ToLower(v)
	}
	lower := func(s string) string {
		if sm.GetIgnoreCase() {
			return strings.ToLower(s)
		}
		return s
	}
	switch p := sm.GetMatchPattern().(type) {
	case *matcherv3.StringMatcher_Exact:
		return v == lower(p.Exact)
	case *matcherv3.StringMatcher_Prefix:
		return strings.HasPrefix(v, lower(p.Prefix))
	case *matcherv3.StringMatcher_Suffix:
		return strings.HasSuffix(v, lower(p.Suffix))
	case *matcherv3.StringMatcher_Contains:
		return strings.Contains(v, lower(p.Contains))
	case *matcherv3.StringMatcher_SafeRegex:
		return fullMatch(p.SafeRegex.GetRegex(), v)
	}
	return false
}

// fullMatch is RE2::FullMatch, which Envoy uses for every safe_regex.
func fullMatch(expr, s string) bool {
	re, err := regexp.Compile(`^(?:` + expr + `)$`)
	return err == nil && re.MatchString(s)
}
