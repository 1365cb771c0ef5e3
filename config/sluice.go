package config

import (
	"net"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/sluice-mesh/sluice/internal/re2"
	"github.com/sluice-mesh/sluice/model"
)

// Defaults for the sluice.dev kinds (README.md's configuration reference lists them).
const (
	DefaultAdminAddress          = "127.0.0.1:9900"
	DefaultStateDir              = ".sluice"
	DefaultMinRequests           = 50
	DefaultAckTimeout            = 10 * time.Second
	DefaultConnectTimeout        = time.Second
	DefaultHealthPath            = "/healthz"
	DefaultHealthInterval        = 5 * time.Second
	DefaultHealthTimeout         = time.Second
	DefaultHealthyThreshold      = 2
	DefaultUnhealthyThreshold    = 3
	DefaultConsecutiveFailures   = 5
	DefaultBaseEjectionTime      = 30 * time.Second
	DefaultMaxHeaderBytes        = 64 << 10
	DefaultIdleTimeout           = 120 * time.Second
	DefaultReadTimeout           = 10 * time.Second
	DefaultBodyTimeout           = 60 * time.Second
	DefaultSendTimeout           = 60 * time.Second
	DefaultResponseHeaderTimeout = 60 * time.Second
	DefaultStickyMaxAge          = 24 * time.Hour
	DefaultWebhookTimeout        = 5 * time.Second
	DefaultWebhookRetries        = 3
	DefaultControlPlaneName      = "default"
	defaultTrustedSourceLoopback = "127.0.0.0/8"
)

func defaultControlPlane() model.ControlPlane {
	return model.ControlPlane{
		Name:        DefaultControlPlaneName,
		Admin:       model.Admin{Address: DefaultAdminAddress},
		StateDir:    DefaultStateDir,
		MinRequests: DefaultMinRequests,
	}
}

// hostPort checks a host:port address with a numeric port.
func (d *dec) hostPort(o *obj, field string, required bool) string {
	v := o.get(field)
	if v == nil || isNull(v) {
		if required {
			o.require(field, "write host:port, e.g. 127.0.0.1:8080")
		}
		return ""
	}
	s, ok := d.str(v, o.sub(field))
	if !ok {
		return ""
	}
	host, port, err := net.SplitHostPort(s)
	p, perr := strconv.Atoi(port)
	if err != nil || perr != nil || p < 0 || p > 65535 || strings.ContainsAny(host, " /") {
		d.errf(v, CodeValue, "%s: %q is not host:port; write e.g. 127.0.0.1:8080", o.sub(field), s)
		return ""
	}
	return s
}

func (d *dec) positive(o *obj, field string, def int) int {
	v := o.get(field)
	if v == nil {
		return def
	}
	n, ok := d.integer(v, o.sub(field))
	if !ok {
		return def
	}
	if n < 1 {
		d.errf(v, CodeValue, "%s: %d must be at least 1", o.sub(field), n)
		return def
	}
	return n
}

func (d *dec) nonNegative(o *obj, field string, def int) int {
	v := o.get(field)
	if v == nil {
		return def
	}
	n, ok := d.integer(v, o.sub(field))
	if !ok {
		return def
	}
	if n < 0 {
		d.errf(v, CodeValue, "%s: %d is negative; use 0 or more", o.sub(field), n)
		return def
	}
	return n
}

func (d *dec) dur(o *obj, field string, def time.Duration) time.Duration {
	v := o.get(field)
	if v == nil {
		return def
	}
	t, ok := d.duration(v, o.sub(field))
	if !ok {
		return def
	}
	return t
}

func (d *dec) strField(o *obj, field string) string {
	v := o.get(field)
	if v == nil {
		return ""
	}
	s, _ := d.str(v, o.sub(field))
	return s
}

func (l *loader) cluster(d *dec, name string, pos model.Pos, spec *obj) {
	c := model.Cluster{
		Name:                  name,
		Protocol:              model.ProtocolHTTP1,
		ConnectTimeout:        DefaultConnectTimeout,
		ResponseHeaderTimeout: DefaultResponseHeaderTimeout,
		Outlier:               model.OutlierDetection{ConsecutiveFailures: DefaultConsecutiveFailures, BaseEjectionTime: DefaultBaseEjectionTime},
		Pos:                   pos,
	}
	d.discovery(spec, &c)
	discovered := !isNull(d.resolve(spec.get("dns"))) || !isNull(d.resolve(spec.get("kubernetes")))
	eps := spec.get("endpoints")
	if !discovered && (eps == nil || len(d.list(eps, spec.sub("endpoints"))) == 0) {
		if eps == nil || isNull(eps) {
			spec.require("endpoints", "list the addresses, e.g. endpoints: [{address: 127.0.0.1:9001}], or discover them with dns or kubernetes")
		} else if d.resolve(eps) != nil && d.resolve(eps).Kind == yaml.SequenceNode {
			d.errf(eps, CodeSchema, "%s: list at least one endpoint", spec.sub("endpoints"))
		}
	}
	seen := map[string]bool{}
	for i, en := range d.list(eps, spec.sub("endpoints")) {
		eo := d.object(en, en, spec.sub("endpoints")+"["+strconv.Itoa(i)+"]")
		ep := model.Endpoint{Address: d.hostPort(eo, "address", true), Weight: d.positive(eo, "weight", 1)}
		eo.end()
		if ep.Address != "" {
			if seen[ep.Address] {
				d.errf(en, CodeValue, "%s: endpoint %s is listed twice; list it once (use weight to favour it)", eo.path, ep.Address)
			}
			seen[ep.Address] = true
			c.Endpoints = append(c.Endpoints, ep)
		}
	}
	if v := spec.get("protocol"); v != nil {
		if s, ok := d.str(v, spec.sub("protocol")); ok {
			switch model.Protocol(s) {
			case model.ProtocolHTTP1, model.ProtocolH2C:
				c.Protocol = model.Protocol(s)
			default:
				d.errf(v, CodeValue, "%s: %q is not a protocol; use http1 or h2c", spec.sub("protocol"), s)
			}
		}
	}
	if hc := spec.obj("healthCheck"); hc.present() {
		h := &model.HealthCheck{
			Path:               DefaultHealthPath,
			Interval:           d.dur(hc, "interval", DefaultHealthInterval),
			Timeout:            d.dur(hc, "timeout", DefaultHealthTimeout),
			HealthyThreshold:   d.positive(hc, "healthyThreshold", DefaultHealthyThreshold),
			UnhealthyThreshold: d.positive(hc, "unhealthyThreshold", DefaultUnhealthyThreshold),
		}
		if p := d.strField(hc, "path"); p != "" {
			if !strings.HasPrefix(p, "/") {
				d.errf(hc.get("path"), CodeValue, "%s: %q must start with /", hc.sub("path"), p)
			}
			h.Path = p
		}
		if h.Interval == 0 {
			d.errf(hc.key("interval"), CodeValue, "%s: must be more than 0", hc.sub("interval"))
		}
		if h.Timeout == 0 {
			d.errf(hc.key("timeout"), CodeValue, "%s: must be more than 0", hc.sub("timeout"))
		}
		if h.Timeout > h.Interval && h.Interval > 0 {
			d.warnf(hc.key("timeout"), CodeSuspicious, "%s: %s is longer than the interval %s; checks will overlap", hc.sub("timeout"), h.Timeout, h.Interval)
		}
		hc.end()
		c.HealthCheck = h
	}
	c.Warmup = d.dur(spec, "warmup", DefaultWarmup)
	c.ConnectTimeout = d.dur(spec, "connectTimeout", DefaultConnectTimeout)
	if c.ConnectTimeout == 0 {
		d.errf(spec.key("connectTimeout"), CodeValue, "%s: must be more than 0", spec.sub("connectTimeout"))
	}
	c.RequestTimeout = d.dur(spec, "requestTimeout", 0)
	c.ResponseHeaderTimeout = d.dur(spec, "responseHeaderTimeout", DefaultResponseHeaderTimeout)
	if od := spec.obj("outlierDetection"); od.present() {
		c.Outlier.ConsecutiveFailures = d.nonNegative(od, "consecutiveFailures", DefaultConsecutiveFailures)
		c.Outlier.BaseEjectionTime = d.dur(od, "baseEjectionTime", DefaultBaseEjectionTime)
		od.end()
	}
	spec.end()
	if l.define(d, l.clusterAt, "Cluster", name, pos) {
		l.cfg.Clusters = append(l.cfg.Clusters, c)
	}
}

var headerName = regexp.MustCompile(`^[!#$%&'*+\-.^_` + "`" + `|~0-9A-Za-z]+$`)

// headerMatch decodes a Sluice header match {name, value | exact | prefix | regex}.
func (d *dec) headerMatch(o *obj) (model.HeaderMatch, bool) {
	h := model.HeaderMatch{}
	if !o.require("name", "name the header") {
		o.accept("value", "exact", "prefix", "regex")
		return h, false
	}
	h.Name = strings.ToLower(d.strField(o, "name"))
	if h.Name != "" && !headerName.MatchString(h.Name) {
		d.errf(o.get("name"), CodeValue, "%s: %q is not a valid header name", o.sub("name"), h.Name)
	}
	sm, ok := d.stringMatch(o, "value")
	o.end()
	h.Value = sm
	return h, ok && h.Name != ""
}

// stringMatch reads exactly one of exact (or alias), prefix, regex from o.
func (d *dec) stringMatch(o *obj, alias string) (model.StringMatch, bool) {
	var sm model.StringMatch
	set := 0
	var at = o.at
	fields := []string{"exact", "prefix", "regex"}
	if alias != "" {
		fields = append([]string{alias}, fields...)
	}
	for _, f := range fields {
		v := o.get(f)
		if v == nil {
			continue
		}
		set++
		at = v
		s, _ := d.text(v, o.sub(f))
		switch f {
		case "exact", alias:
			sm.Exact = s
		case "prefix":
			sm.Prefix = s
		case "regex":
			if _, err := regexp.Compile(s); err != nil {
				d.errf(v, CodeValue, "%s: %q is not an RE2 regular expression: %v", o.sub(f), s, err)
			} else if n, _ := re2.ProgramSize(s); n > re2.EnvoyDefaultLimit {
				d.warnf(v, CodeValue, "%s: %q compiles to an RE2 program of about %d instructions, over Envoy's default limit of %d: "+
					"the xDS server refuses routes using it (Envoy would NACK them); the router accepts it", o.sub(f), s, n, re2.EnvoyDefaultLimit)
			}
			sm.Regex = s
		}
	}
	if set != 1 {
		d.errf(at, CodeSchema, "%s: set exactly one of %s", orTop(o.path), strings.Join(fields, ", "))
		return sm, false
	}
	return sm, true
}

func (l *loader) listener(d *dec, name string, pos model.Pos, spec *obj) {
	ln := model.Listener{Name: name, Pos: pos}
	ln.Address = d.hostPort(spec, "address", true)
	routes := spec.get("routes")
	if routes == nil {
		spec.require("routes", "add at least one route, e.g. routes: [{pathPrefix: /, cluster: NAME}]")
	}
	names := map[string]bool{}
	for i, rn := range d.list(routes, spec.sub("routes")) {
		ro := d.object(rn, rn, spec.sub("routes")+"["+strconv.Itoa(i)+"]")
		r := model.Route{Name: d.strField(ro, "name"), PathPrefix: "/"}
		if r.Name == "" {
			r.Name = name + "-" + strconv.Itoa(i)
		}
		if names[r.Name] {
			d.errf(ro.key("name"), CodeReference, "%s: route name %q is used twice in this listener; rename one", ro.path, r.Name)
		}
		names[r.Name] = true
		for j, hn := range d.list(ro.get("hosts"), ro.sub("hosts")) {
			if h, ok := d.str(hn, ro.sub("hosts")+"["+strconv.Itoa(j)+"]"); ok {
				r.Hosts = append(r.Hosts, strings.ToLower(h))
			}
		}
		if len(r.Hosts) == 0 {
			r.Hosts = []string{"*"}
		}
		if p := d.strField(ro, "pathPrefix"); p != "" {
			if !strings.HasPrefix(p, "/") {
				d.errf(ro.get("pathPrefix"), CodeValue, "%s: %q must start with /", ro.sub("pathPrefix"), p)
			}
			r.PathPrefix = p
		}
		if ro.require("cluster", "name the Cluster this route sends traffic to") {
			r.Cluster = d.strField(ro, "cluster")
		}
		ro.end()
		ln.Routes = append(ln.Routes, r)
		l.routeRefs = append(l.routeRefs, routeRef{listener: name, cluster: r.Cluster, d: d, at: ro.key("cluster"), path: ro.sub("cluster")})
	}
	if routes != nil && len(ln.Routes) == 0 && !isNull(routes) {
		d.errf(routes, CodeSchema, "%s: add at least one route", spec.sub("routes"))
	}
	if it := spec.obj("internalTraffic"); it.present() {
		t := &model.InternalTraffic{}
		hs := it.get("headers")
		for i, hn := range d.list(hs, it.sub("headers")) {
			ho := d.object(hn, hn, it.sub("headers")+"["+strconv.Itoa(i)+"]")
			if h, ok := d.headerMatch(ho); ok {
				t.Headers = append(t.Headers, h)
			}
		}
		if len(t.Headers) == 0 {
			it.require("headers", "list the marker headers, e.g. headers: [{name: x-internal-test, value: \"true\"}]")
		}
		ts := it.get("trustedSources")
		for i, sn := range d.list(ts, it.sub("trustedSources")) {
			p := it.sub("trustedSources") + "[" + strconv.Itoa(i) + "]"
			s, ok := d.str(sn, p)
			if !ok {
				continue
			}
			pfx, err := netip.ParsePrefix(s)
			if err != nil {
				if a, aerr := netip.ParseAddr(s); aerr == nil {
					pfx, err = a.Prefix(a.BitLen())
				}
			}
			if err != nil {
				d.errf(sn, CodeValue, "%s: %q is not a CIDR prefix; write e.g. 10.0.0.0/8 or 127.0.0.1", p, s)
				continue
			}
			t.TrustedSources = append(t.TrustedSources, pfx.Masked())
		}
		if ts == nil {
			t.TrustedSources = []netip.Prefix{netip.MustParsePrefix(defaultTrustedSourceLoopback), netip.MustParsePrefix("::1/128")}
		}
		it.end()
		ln.InternalTraffic = t
	}
	if ss := spec.obj("stickySessions"); ss.present() {
		s := &model.StickySessions{Cookie: d.strField(ss, "cookie"), MaxAge: d.dur(ss, "maxAge", DefaultStickyMaxAge)}
		if s.Cookie == "" {
			s.Cookie = "sluice-" + name
		}
		if !cookieName.MatchString(s.Cookie) {
			d.errf(ss.key("cookie"), CodeValue, "%s: %q is not a valid cookie name", ss.sub("cookie"), s.Cookie)
		}
		ss.end()
		ln.StickySessions = s
		l.stickyRefs = append(l.stickyRefs, stickyRef{d: d, at: spec.key("stickySessions"), path: spec.sub("stickySessions")})
	}
	ln.Limits = model.Limits{MaxHeaderBytes: DefaultMaxHeaderBytes, IdleTimeout: DefaultIdleTimeout, ReadTimeout: DefaultReadTimeout,
		BodyTimeout: DefaultBodyTimeout, SendTimeout: DefaultSendTimeout}
	if lo := spec.obj("limits"); lo.present() {
		ln.Limits.MaxHeaderBytes = d.positive(lo, "maxHeaderBytes", DefaultMaxHeaderBytes)
		ln.Limits.IdleTimeout = d.dur(lo, "idleTimeout", DefaultIdleTimeout)
		ln.Limits.ReadTimeout = d.dur(lo, "readTimeout", DefaultReadTimeout)
		ln.Limits.BodyTimeout = d.dur(lo, "bodyTimeout", DefaultBodyTimeout)
		ln.Limits.SendTimeout = d.dur(lo, "sendTimeout", DefaultSendTimeout)
		lo.end()
	}
	spec.end()
	if l.define(d, l.listenerAt, "Listener", name, pos) {
		l.cfg.Listeners = append(l.cfg.Listeners, ln)
	}
}

var cookieName = regexp.MustCompile(`^[!#$%&'*+\-.^_` + "`" + `|~0-9A-Za-z]+$`)

type routeRef struct {
	listener, cluster string
	d                 *dec
	at                *yaml.Node
	path              string
}

// stickyRef is where a Listener sets stickySessions.
type stickyRef struct {
	d    *dec
	at   *yaml.Node
	path string
}

// checkListeners reports listener routes to clusters no file defines, two listeners on
// one address, and, when xDS is served, sticky sessions (which only the router honours).
func (l *loader) checkListeners() {
	if l.cfg.ControlPlane.XDS != nil {
		for _, r := range l.stickyRefs {
			r.d.warnf(r.at, CodeSuspicious, "%s: sticky sessions are honoured by Sluice's router only: Envoy and proxyless gRPC split every request", r.path)
		}
	}
	for _, r := range l.routeRefs {
		if r.cluster != "" && l.cfg.Cluster(r.cluster) == nil {
			r.d.errf(r.at, CodeReference, "%s: %q names no Cluster; define a sluice.dev/v1alpha1 Cluster %q or fix the name", r.path, r.cluster, r.cluster)
		}
	}
	addrs := map[string]string{}
	for _, ln := range l.cfg.Listeners {
		if ln.Address == "" {
			continue
		}
		if other, dup := addrs[ln.Address]; dup {
			l.diags = append(l.diags, Diagnostic{File: ln.Pos.File, Line: ln.Pos.Line, Code: CodeReference,
				Message: "Listener " + strconv.Quote(ln.Name) + ": address " + ln.Address + " is also used by Listener " + strconv.Quote(other) + "; give each listener its own address"})
		}
		addrs[ln.Address] = ln.Name
	}
}

func (l *loader) controlPlane(d *dec, name string, pos model.Pos, spec *obj) {
	if l.controlPlaneAt != nil {
		d.add(pos.Line, SeverityError, CodeReference, "a second ControlPlane %q: one is already defined at %s; keep one", name, *l.controlPlaneAt)
		return
	}
	l.controlPlaneAt = &pos
	cp := defaultControlPlane()
	cp.Name, cp.Pos = name, pos
	if ao := spec.obj("admin"); ao.present() {
		if a := d.hostPort(ao, "address", false); a != "" {
			cp.Admin.Address = a
		}
		cp.Admin.TokenFile = d.strField(ao, "tokenFile")
		ao.end()
		if host, _, err := net.SplitHostPort(cp.Admin.Address); err == nil && !isLoopback(host) && cp.Admin.TokenFile == "" {
			d.errf(ao.key("address"), CodeValue, "%s: %s is not a loopback address, so the admin API needs a token: set spec.admin.tokenFile", ao.sub("address"), cp.Admin.Address)
		}
	}
	if xo := spec.obj("xds"); xo.present() {
		x := &model.XDS{AckTimeout: DefaultAckTimeout}
		x.Address = d.hostPort(xo, "address", true)
		if to := xo.obj("tls"); to.present() {
			t := &model.TLS{CertFile: d.strField(to, "certFile"), KeyFile: d.strField(to, "keyFile"), ClientCAFile: d.strField(to, "clientCAFile")}
			if t.CertFile == "" || t.KeyFile == "" {
				d.errf(to.at, CodeSchema, "%s: set both certFile and keyFile", to.path)
			}
			to.end()
			x.TLS = t
		}
		x.Keepalive = d.dur(xo, "keepalive", 0)
		x.AckTimeout = d.dur(xo, "ackTimeout", DefaultAckTimeout)
		if x.AckTimeout == 0 {
			d.errf(xo.key("ackTimeout"), CodeValue, "%s: must be more than 0", xo.sub("ackTimeout"))
		}
		xo.end()
		cp.XDS = x
	}
	if s := d.strField(spec, "stateDir"); s != "" {
		cp.StateDir = s
	}
	if cp.Etcd = d.etcdStore(spec); cp.Etcd != nil && spec.get("stateDir") != nil {
		d.warnf(spec.key("stateDir"), CodeIgnored, "%s is ignored: with store.etcd, rollout state lives in etcd", spec.sub("stateDir"))
	}
	cp.MinRequests = d.nonNegative(spec, "minRequests", DefaultMinRequests)
	d.controlPlaneDiscovery(spec, &cp)
	for i, wn := range d.list(spec.get("webhooks"), spec.sub("webhooks")) {
		wo := d.object(wn, wn, spec.sub("webhooks")+"["+strconv.Itoa(i)+"]")
		w := model.Webhook{Timeout: d.dur(wo, "timeout", DefaultWebhookTimeout), Retries: d.nonNegative(wo, "retries", DefaultWebhookRetries)}
		if wo.require("url", "give the URL to POST rollout events to") {
			w.URL = d.strField(wo, "url")
			if w.URL != "" && !strings.HasPrefix(w.URL, "http://") && !strings.HasPrefix(w.URL, "https://") {
				d.errf(wo.get("url"), CodeValue, "%s: %q must start with http:// or https://", wo.sub("url"), w.URL)
			}
		}
		w.Headers = d.stringMap(wo, "headers")
		wo.end()
		cp.Webhooks = append(cp.Webhooks, w)
	}
	spec.end()
	l.cfg.ControlPlane = cp
}

// stringMap decodes a mapping of strings.
func (d *dec) stringMap(o *obj, field string) map[string]string {
	m := d.object(o.get(field), o.key(field), o.sub(field))
	if !m.present() {
		return nil
	}
	out := map[string]string{}
	for _, k := range m.order {
		if s, ok := d.text(m.get(k), m.sub(k)); ok {
			out[k] = s
		}
	}
	return out
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}
