package router

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"

	"github.com/sluice-mesh/sluice/model"
)

// table is one immutable routing table built from a snapshot. Only the counters inside
// (round-robin positions) change after it is built.
type table struct {
	version   uint64
	listeners map[string]*listenerTable // by address
	upstreams map[string]*upstream      // by cluster name
	endpoints map[string]*endpoint      // by endpointKey
}

type listenerTable struct {
	name      string
	addr      string
	limits    limits
	routes    []*route
	vhosts    *vhosts
	marker    []headerMatcher // internal-traffic headers; nil: none
	markerKey []string        // their canonical names: fields so named are stripped from untrusted requests
	trusted   []netip.Prefix
	sticky    *stickyCookie // nil: no sticky sessions
	// fast: no route mirrors and no cluster is h2c, so the fast path may serve it.
	fast bool
	// interesting are the canonical header keys decide reads.
	interesting []string
}

// limits are a listener's limits with the defaults filled in.
type limits struct {
	maxHead                  int
	idle, header, body, send time.Duration
}

// Defaults of model.Limits fields left zero.
const (
	defaultMaxHeaderBytes = 1 << 20
	defaultIdleTimeout    = 120 * time.Second
	defaultHeaderTimeout  = 10 * time.Second
	defaultBodyTimeout    = 60 * time.Second
	defaultSendTimeout    = 60 * time.Second
)

func resolveLimits(l model.Limits) limits {
	or := func(d, def time.Duration) time.Duration {
		if d > 0 {
			return d
		}
		return def
	}
	lim := limits{maxHead: l.MaxHeaderBytes, idle: or(l.IdleTimeout, defaultIdleTimeout),
		header: or(l.ReadTimeout, defaultHeaderTimeout), body: or(l.BodyTimeout, defaultBodyTimeout),
		send: or(l.SendTimeout, defaultSendTimeout)}
	if lim.maxHead <= 0 {
		lim.maxHead = defaultMaxHeaderBytes
	}
	return lim
}

type route struct {
	name         string
	hosts        []string
	prefix       string
	split        *splitter
	buckets      *bucketTable // sticky-session buckets → cluster
	headerRoutes []headerRoute
	mirrors      []*mirror
	internal     *upstream // nil: marked requests are routed normally
	metrics      map[*upstream]*rcMetrics
}

type headerRoute struct {
	match []headerMatcher
	up    *upstream
}

type mirror struct {
	name    string
	matches []requestMatcher
	percent uint64
	up      *upstream
	n       atomic.Uint64
}

// take decides, exactly, whether this request is among the mirror's percentage.
func (m *mirror) take() bool {
	if m.percent >= 100 {
		return true
	}
	if m.percent == 0 {
		return false
	}
	i := m.n.Add(1) - 1
	return (i+1)*m.percent/100 > i*m.percent/100
}

func endpointKey(cluster, addr string) string { return cluster + "\x00" + addr }

// build validates s and builds a table. It reuses endpoint state and transports from
// the router; it does not start or stop anything (see Router.Apply).
func (r *Router) build(s *model.Snapshot) (*table, error) {
	if s == nil {
		return nil, errors.New("nil snapshot")
	}
	var errs []error
	fail := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	t := &table{
		version:   s.Version,
		listeners: map[string]*listenerTable{},
		upstreams: map[string]*upstream{},
		endpoints: map[string]*endpoint{},
	}
	for i := range s.Clusters {
		c := s.Clusters[i]
		if c.Name == "" {
			fail("cluster %d: empty name", i)
			continue
		}
		if _, dup := t.upstreams[c.Name]; dup {
			fail("cluster %s: defined twice", c.Name)
			continue
		}
		switch c.Protocol {
		case "", model.ProtocolHTTP1, model.ProtocolH2C:
		default:
			fail("cluster %s: unknown protocol %q", c.Name, c.Protocol)
		}
		if c.HealthCheck != nil && c.HealthCheck.Path != "" && !strings.HasPrefix(c.HealthCheck.Path, "/") {
			fail("cluster %s: health check path %q must start with /", c.Name, c.HealthCheck.Path)
		}
		u := &upstream{name: c.Name, cfg: c, warmup: c.Warmup, timeout: c.RequestTimeout, headerTimeout: c.ResponseHeaderTimeout}
		u.transport = r.transportFor(&c)
		seen := map[string]bool{}
		for _, ep := range c.Endpoints {
			if _, _, err := net.SplitHostPort(ep.Address); err != nil {
				fail("cluster %s: endpoint %q: %v", c.Name, ep.Address, err)
				continue
			}
			if seen[ep.Address] {
				fail("cluster %s: endpoint %s listed twice", c.Name, ep.Address)
				continue
			}
			seen[ep.Address] = true
			key := endpointKey(c.Name, ep.Address)
			e := r.endpoints[key]
			if e == nil {
				e = newEndpoint(c.Name, ep.Address, r.now, r.metrics, r.log)
			}
			t.endpoints[key] = e
			u.eps = append(u.eps, e)
			w := max(ep.Weight, 1)
			for range w {
				u.ring = append(u.ring, e)
			}
		}
		// Interleave weighted endpoints so a weight-3 endpoint does not take 3 in a row.
		if len(u.ring) > len(u.eps) {
			u.ring = interleave(u.eps, c.Endpoints)
		}
		t.upstreams[c.Name] = u
	}
	lookup := func(where, name string) *upstream {
		u := t.upstreams[name]
		if u == nil {
			fail("%s: unknown cluster %q", where, name)
		}
		return u
	}
	names := map[string]bool{}
	for i := range s.Listeners {
		l := &s.Listeners[i]
		if l.Name == "" {
			fail("listener %d: empty name", i)
			continue
		}
		if names[l.Name] {
			fail("listener %s: defined twice", l.Name)
		}
		names[l.Name] = true
		if _, _, err := net.SplitHostPort(l.Address); err != nil {
			fail("listener %s: address %q: %v", l.Name, l.Address, err)
			continue
		}
		if other, dup := t.listeners[l.Address]; dup {
			fail("listener %s: address %s already used by listener %s", l.Name, l.Address, other.name)
			continue
		}
		lt := &listenerTable{name: l.Name, addr: l.Address, limits: resolveLimits(l.Limits)}
		if it := l.InternalTraffic; it != nil && len(it.Headers) > 0 {
			m, err := compileHeaders(it.Headers)
			if err != nil {
				fail("listener %s: internalTraffic: %v", l.Name, err)
			}
			lt.marker = m
			for _, h := range m {
				lt.markerKey = append(lt.markerKey, h.key)
			}
			lt.trusted = it.TrustedSources
		}
		if st := l.StickySessions; st != nil {
			if st.Cookie == "" || !validCookieName(st.Cookie) {
				fail("listener %s: stickySessions: invalid cookie name %q", l.Name, st.Cookie)
			}
			lt.sticky = &stickyCookie{name: st.Cookie, maxAge: int(st.MaxAge / time.Second), keys: r.stickyKeys, next: &r.stickyNext}
		}
		routeNames := map[string]bool{}
		for j := range l.Routes {
			rt := &l.Routes[j]
			name := rt.Name
			if name == "" {
				name = fmt.Sprintf("%s-%d", l.Name, j)
			}
			where := fmt.Sprintf("listener %s route %s", l.Name, name)
			if routeNames[name] {
				fail("%s: route name used twice", where)
			}
			routeNames[name] = true
			if rt.PathPrefix != "" && !strings.HasPrefix(rt.PathPrefix, "/") {
				fail("%s: pathPrefix %q must start with /", where, rt.PathPrefix)
			}
			ro := &route{name: name, prefix: rt.PathPrefix, metrics: map[*upstream]*rcMetrics{}}
			for _, h := range rt.Hosts {
				ro.hosts = append(ro.hosts, strings.ToLower(h))
			}
			use := func(u *upstream) {
				if u != nil && ro.metrics[u] == nil {
					ro.metrics[u] = r.metrics.routeCluster(name, u.name)
				}
			}
			base := lookup(where, rt.Cluster)
			use(base)
			if rt.Split == nil {
				if base != nil {
					ro.split = newSplitter([]*upstream{base}, []int{1})
					ro.buckets = newBucketTable(base, []*upstream{base}, []int{100})
				}
			} else {
				sum := 0
				var ups []*upstream
				var ws []int
				seen := map[*upstream]bool{}
				for _, w := range rt.Split {
					u := lookup(where+" split", w.Cluster)
					if w.Weight < 0 || w.Weight > 100 {
						fail("%s: weight %d of %s out of 0..100", where, w.Weight, w.Cluster)
					}
					sum += w.Weight
					if u != nil {
						if seen[u] {
							fail("%s: cluster %s twice in split", where, w.Cluster)
						}
						seen[u] = true
						use(u)
						ups = append(ups, u)
						ws = append(ws, w.Weight)
					}
				}
				if sum != 100 {
					fail("%s: split weights sum to %d, not 100", where, sum)
				} else if len(ups) == len(rt.Split) {
					ro.buckets = newBucketTable(base, ups, ws)
					ro.split = newSplitter(ups, append([]int(nil), ws...))
				}
			}
			for _, hr := range rt.HeaderRoutes {
				u := lookup(where+" header route "+hr.Name, hr.Cluster)
				m, err := compileHeaders(hr.Headers)
				if err != nil {
					fail("%s header route %s: %v", where, hr.Name, err)
				}
				if len(hr.Headers) == 0 {
					fail("%s header route %s: no header matches", where, hr.Name)
				}
				use(u)
				ro.headerRoutes = append(ro.headerRoutes, headerRoute{match: m, up: u})
			}
			for _, mr := range rt.Mirrors {
				u := lookup(where+" mirror "+mr.Name, mr.Cluster)
				if mr.Percentage < 0 || mr.Percentage > 100 {
					fail("%s mirror %s: percentage %d out of 0..100", where, mr.Name, mr.Percentage)
				}
				mi := &mirror{name: mr.Name, percent: uint64(max(mr.Percentage, 0)), up: u}
				for _, rm := range mr.Matches {
					m, err := compileRequest(rm)
					if err != nil {
						fail("%s mirror %s: %v", where, mr.Name, err)
					}
					mi.matches = append(mi.matches, m)
				}
				use(u)
				ro.mirrors = append(ro.mirrors, mi)
			}
			if rt.InternalCluster != "" {
				ro.internal = lookup(where+" internalCluster", rt.InternalCluster)
				use(ro.internal)
			}
			lt.routes = append(lt.routes, ro)
		}
		lt.vhosts = newVhosts(lt.routes)
		lt.fast = !r.opts.DisableFastPath
		keys := map[string]bool{}
		for _, h := range lt.marker {
			keys[h.key] = true
		}
		if lt.marker != nil {
			keys["X-Forwarded-For"] = true
		}
		if lt.sticky != nil {
			keys["Cookie"] = true
		}
		for _, ro := range lt.routes {
			if len(ro.mirrors) > 0 {
				lt.fast = false
			}
			for u := range ro.metrics {
				if u.cfg.Protocol == model.ProtocolH2C {
					lt.fast = false
				}
			}
			for _, hr := range ro.headerRoutes {
				for _, h := range hr.match {
					keys[h.key] = true
				}
			}
		}
		for k := range keys {
			lt.interesting = append(lt.interesting, k)
		}
		t.listeners[l.Address] = lt
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return t, nil
}

// interleave builds a smooth weighted round-robin ring over endpoints.
func interleave(eps []*endpoint, cfg []model.Endpoint) []*endpoint {
	ups := make([]*upstream, len(eps))
	ws := make([]int, len(eps))
	idx := map[*upstream]*endpoint{}
	for i, e := range eps {
		ups[i] = &upstream{}
		idx[ups[i]] = e
		for _, c := range cfg {
			if c.Address == e.addr {
				ws[i] = max(c.Weight, 1)
			}
		}
	}
	s := newSplitter(ups, ws)
	out := make([]*endpoint, len(s.seq))
	for i, u := range s.seq {
		out[i] = idx[u]
	}
	return out
}

func validCookieName(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte("()<>@,;:\\\"/[]?={}", c) >= 0 {
			return false
		}
	}
	return true
}

// transportFor returns the shared upstream transport for a cluster's protocol,
// connect timeout and response-header timeout, creating it on first use. Transports are never closed while the
// router runs, so in-flight requests on an old table keep their connections.
func (r *Router) transportFor(c *model.Cluster) http.RoundTripper {
	ct := c.ConnectTimeout
	if ct <= 0 {
		ct = 5 * time.Second
	}
	h2c := c.Protocol == model.ProtocolH2C
	key := fmt.Sprintf("%v/%d/%d", h2c, ct, c.ResponseHeaderTimeout)
	r.trMu.Lock()
	defer r.trMu.Unlock()
	if t, ok := r.transports[key]; ok {
		return t
	}
	d := &net.Dialer{Timeout: ct, KeepAlive: 30 * time.Second}
	t := &http.Transport{
		DialContext:           d.DialContext,
		MaxIdleConns:          0, // no global cap
		MaxIdleConnsPerHost:   r.opts.MaxIdleConnsPerHost,
		IdleConnTimeout:       r.opts.UpstreamIdleTimeout,
		ResponseHeaderTimeout: c.ResponseHeaderTimeout,
		DisableCompression:    true,
		ExpectContinueTimeout: time.Second,
		WriteBufferSize:       32 << 10,
		ReadBufferSize:        32 << 10,
	}
	if h2c {
		var p http.Protocols
		p.SetUnencryptedHTTP2(true)
		t.Protocols = &p
	}
	r.transports[key] = t
	return t
}
