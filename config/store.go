package config

import (
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/sluice-mesh/sluice/model"
)

// Defaults for ControlPlane.spec.store.etcd.
const (
	DefaultEtcdPrefix   = "/sluice/"
	DefaultEtcdLeaseTTL = 5 * time.Second
)

// etcdStore decodes ControlPlane.spec.store: {etcd: {endpoints, prefix, leaseTTL, tls}}.
// It returns nil when store is absent.
func (d *dec) etcdStore(spec *obj) *model.EtcdStore {
	so := spec.obj("store")
	if !so.present() {
		return nil
	}
	defer so.end()
	if !so.require("etcd", "Sluice keeps shared state in etcd: etcd: {endpoints: [\"http://127.0.0.1:2379\"]}; without store, state stays in stateDir") {
		return nil
	}
	eo := so.obj("etcd")
	defer eo.end()
	e := &model.EtcdStore{Prefix: DefaultEtcdPrefix, LeaseTTL: DefaultEtcdLeaseTTL, Pos: d.pos(so.key("etcd"))}

	eps := eo.get("endpoints")
	if eps == nil || isNull(eps) {
		eo.require("endpoints", "list etcd's client URLs, e.g. endpoints: [\"http://10.0.0.1:2379\", \"http://10.0.0.2:2379\", \"http://10.0.0.3:2379\"]")
	}
	schemes := map[string]bool{}
	seen := map[string]bool{}
	items := d.list(eps, eo.sub("endpoints"))
	if n := d.resolve(eps); n != nil && n.Kind == yaml.SequenceNode && len(items) == 0 {
		d.errf(eps, CodeSchema, "%s: list at least one etcd client URL", eo.sub("endpoints"))
	}
	for i, en := range items {
		p := eo.sub("endpoints") + "[" + strconv.Itoa(i) + "]"
		s, ok := d.str(en, p)
		if !ok {
			continue
		}
		scheme, msg := etcdEndpoint(s)
		if msg != "" {
			d.errf(en, CodeValue, "%s: %q %s", p, s, msg)
			continue
		}
		if seen[s] {
			d.errf(en, CodeValue, "%s: %q is listed twice; list each etcd member once", p, s)
			continue
		}
		seen[s] = true
		schemes[scheme] = true
		e.Endpoints = append(e.Endpoints, s)
	}
	if schemes["http"] && schemes["https"] {
		d.errf(eps, CodeValue, "%s: mixes http:// and https:// endpoints; etcd clients use one scheme for every member", eo.sub("endpoints"))
	}

	if v := eo.get("prefix"); v != nil {
		if s, ok := d.str(v, eo.sub("prefix")); ok {
			switch {
			case !strings.HasPrefix(s, "/"):
				d.errf(v, CodeValue, "%s: %q must start with /, e.g. /sluice/", eo.sub("prefix"), s)
			case strings.ContainsAny(s, " \t\r\n"):
				d.errf(v, CodeValue, "%s: %q contains white space", eo.sub("prefix"), s)
			default:
				// Without the trailing slash, /sluice would also cover /sluice-prod/.
				if !strings.HasSuffix(s, "/") {
					s += "/"
				}
				e.Prefix = s
			}
		}
	}

	if v := eo.get("leaseTTL"); v != nil {
		if ttl, ok := d.duration(v, eo.sub("leaseTTL")); ok {
			switch {
			case ttl < time.Second:
				d.errf(v, CodeValue, "%s: %s is below 1s, the shortest lease etcd grants", eo.sub("leaseTTL"), ttl)
			case ttl%time.Second != 0:
				d.errf(v, CodeValue, "%s: %s is not whole seconds; etcd leases count seconds, write e.g. %s", eo.sub("leaseTTL"), ttl, ttl.Round(time.Second))
			default:
				e.LeaseTTL = ttl
			}
		}
	}

	if to := eo.obj("tls"); to.present() {
		t := &model.EtcdTLS{CA: d.strField(to, "ca"), Cert: d.strField(to, "cert"), Key: d.strField(to, "key")}
		switch {
		case t.Cert != "" && t.Key == "":
			d.errf(to.key("cert"), CodeSchema, "%s: cert is set but key is not; a client certificate needs both", to.path)
		case t.Key != "" && t.Cert == "":
			d.errf(to.key("key"), CodeSchema, "%s: key is set but cert is not; a client certificate needs both", to.path)
		case *t == model.EtcdTLS{}:
			d.errf(to.at, CodeSchema, "%s: set ca, and cert with key for mTLS", to.path)
		}
		if schemes["http"] {
			d.errf(to.at, CodeValue, "%s: TLS is set but the endpoints are plain http://; write https:// endpoints", to.path)
		}
		to.end()
		e.TLS = t
	}
	return e
}

// etcdEndpoint checks one endpoint as etcd's clients write it and returns its scheme
// (http for a bare HOST:PORT), or what is wrong with it.
func etcdEndpoint(s string) (scheme, problem string) {
	hostPort := s
	scheme = "http"
	if strings.Contains(s, "://") {
		u, err := url.Parse(s)
		if err != nil {
			return "", "is not a URL; write e.g. http://10.0.0.1:2379"
		}
		if u.Scheme != "http" && u.Scheme != "https" {
			return "", "must start with http:// or https://"
		}
		if u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
			return "", "must be scheme://HOST:PORT and nothing more; write e.g. http://10.0.0.1:2379"
		}
		scheme, hostPort = u.Scheme, u.Host
	}
	host, port, err := net.SplitHostPort(hostPort)
	p, perr := strconv.Atoi(port)
	if err != nil || perr != nil || p < 1 || p > 65535 || host == "" || strings.ContainsAny(host, " /") {
		return "", "is not http://HOST:PORT; write e.g. http://10.0.0.1:2379 (etcd's client port is usually 2379)"
	}
	return scheme, ""
}
