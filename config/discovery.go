package config

import (
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/sluice-mesh/sluice/model"
)

// Defaults of the discovery blocks (README.md's configuration reference lists them).
const (
	DefaultDNSMinRefresh = time.Second
	DefaultDNSMaxRefresh = 30 * time.Second
	// DefaultWarmup keeps a new endpoint's first half minute out of analysis: with
	// discovery, endpoints appear whenever pods or VMs do, and a cold start must not
	// fail a canary.
	DefaultWarmup = 30 * time.Second
)

var (
	// dns1123Label is a Kubernetes namespace, or an EndpointSlice port name.
	dns1123Label = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	// dns1035Label is a Kubernetes Service name.
	dns1035Label = regexp.MustCompile(`^[a-z]([-a-z0-9]*[a-z0-9])?$`)
	// hostLabel is one label of a host name (letters, digits, hyphens inside).
	hostLabel = regexp.MustCompile(`^[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?$`)
	// srvLabel is the _service label of an SRV name (RFC 6335: letters, digits, hyphens).
	srvLabel = regexp.MustCompile(`^_[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?$`)
)

// hostNameProblem says what is wrong with a DNS host name, or "" when nothing is.
func hostNameProblem(s string) string {
	if s == "" {
		return "is empty"
	}
	if _, err := netip.ParseAddr(s); err == nil {
		return "is an IP address, not a name: list it under endpoints instead"
	}
	name := strings.TrimSuffix(s, ".")
	if len(name) > 253 {
		return "is longer than 253 characters"
	}
	for _, l := range strings.Split(name, ".") {
		if len(l) > 63 {
			return "has a label longer than 63 characters"
		}
		if !hostLabel.MatchString(l) {
			return "is not a host name (labels of letters, digits and inner hyphens, separated by dots)"
		}
	}
	return ""
}

// srvNameProblem says what is wrong with an SRV name _service._tcp.domain, or "".
func srvNameProblem(s string) string {
	parts := strings.SplitN(s, ".", 3)
	if len(parts) < 3 || !strings.HasPrefix(parts[0], "_") || !strings.HasPrefix(parts[1], "_") {
		return "is not an SRV name: write _SERVICE._tcp.DOMAIN, e.g. _http._tcp.backend.example.com"
	}
	if len(parts[0]) > 64 || !srvLabel.MatchString(parts[0]) {
		return "has a bad service label " + strconv.Quote(parts[0]) + ": write _ then letters, digits and inner hyphens"
	}
	if strings.ToLower(parts[1]) != "_tcp" {
		return "names protocol " + strconv.Quote(parts[1]) + "; Sluice's endpoints speak HTTP over TCP: use _tcp"
	}
	if p := hostNameProblem(parts[2]); p != "" {
		return "has a domain " + strconv.Quote(parts[2]) + " that " + p
	}
	return ""
}

// discovery decodes a Cluster's dns and kubernetes blocks into c, and reports a
// cluster that has neither them nor fixed endpoints.
func (d *dec) discovery(spec *obj, c *model.Cluster) {
	if do := spec.obj("dns"); do.present() {
		c.DNS = d.dnsDiscovery(do)
	}
	if ko := spec.obj("kubernetes"); ko.present() {
		c.Kubernetes = d.kubernetesDiscovery(ko)
	}
}

func (d *dec) dnsDiscovery(o *obj) *model.DNSDiscovery {
	name, nameOK := d.str(o.get("name"), o.sub("name"))
	srv, srvOK := d.str(o.get("srv"), o.sub("srv"))
	dd := &model.DNSDiscovery{
		Name:       name,
		SRV:        srv,
		MinRefresh: d.dur(o, "minRefresh", DefaultDNSMinRefresh),
		MaxRefresh: d.dur(o, "maxRefresh", DefaultDNSMaxRefresh),
	}
	hasName, hasSRV := o.has("name"), o.has("srv")
	switch {
	case hasName && hasSRV:
		d.errf(o.key("srv"), CodeSchema, "%s: set either name (A/AAAA records, with port) or srv, not both", o.path)
		o.accept("port")
	case !hasName && !hasSRV:
		d.errf(o.at, CodeSchema, "%s: set name and port (A/AAAA records), e.g. {name: backend.example.com, port: 8080}, or srv, e.g. {srv: _http._tcp.backend.example.com}", o.path)
	case hasName:
		if p := hostNameProblem(dd.Name); p != "" && (nameOK || isNull(o.get("name"))) {
			d.errf(o.get("name"), CodeValue, "%s: %q %s", o.sub("name"), dd.Name, p)
		}
		if o.require("port", "give the port the endpoints listen on, e.g. port: 8080") {
			dd.Port = d.port(o.get("port"), o.sub("port"))
		}
	case hasSRV:
		if p := srvNameProblem(dd.SRV); p != "" && (srvOK || isNull(o.get("srv"))) {
			d.errf(o.get("srv"), CodeValue, "%s: %q %s", o.sub("srv"), dd.SRV, p)
		}
		if v := o.get("port"); v != nil {
			d.errf(o.key("port"), CodeSchema, "%s: an SRV record carries its own port; remove port", o.sub("port"))
		}
	}
	if dd.MinRefresh == 0 {
		d.errf(o.key("minRefresh"), CodeValue, "%s: must be more than 0", o.sub("minRefresh"))
	}
	if dd.MaxRefresh == 0 {
		d.errf(o.key("maxRefresh"), CodeValue, "%s: must be more than 0", o.sub("maxRefresh"))
	}
	if dd.MinRefresh > 0 && dd.MaxRefresh > 0 && dd.MinRefresh > dd.MaxRefresh {
		d.errf(o.key("minRefresh"), CodeValue, "%s: %s is longer than maxRefresh %s; minRefresh must not exceed maxRefresh", o.sub("minRefresh"), dd.MinRefresh, dd.MaxRefresh)
	}
	o.end()
	return dd
}

// port decodes a port number 1..65535.
func (d *dec) port(n *yaml.Node, path string) int {
	p, ok := d.integer(n, path)
	if !ok {
		return 0
	}
	if p < 1 || p > 65535 {
		d.errf(n, CodeValue, "%s: %d is not a port; use 1 to 65535", path, p)
		return 0
	}
	return p
}

func (d *dec) kubernetesDiscovery(o *obj) *model.KubernetesDiscovery {
	k := &model.KubernetesDiscovery{Kubeconfig: d.strField(o, "kubeconfig")}
	if o.require("service", "name the Service whose EndpointSlices to watch, e.g. service: backend-api") {
		k.Service = d.strField(o, "service")
		if k.Service != "" && (len(k.Service) > 63 || !dns1035Label.MatchString(k.Service)) {
			d.errf(o.get("service"), CodeValue, "%s: %q is not a Service name (at most 63 lower-case letters, digits and inner hyphens, starting with a letter)", o.sub("service"), k.Service)
		}
	}
	if o.require("namespace", "name the Service's namespace, e.g. namespace: default") {
		k.Namespace = d.strField(o, "namespace")
		if k.Namespace != "" && (len(k.Namespace) > 63 || !dns1123Label.MatchString(k.Namespace)) {
			d.errf(o.get("namespace"), CodeValue, "%s: %q is not a namespace name (at most 63 lower-case letters, digits and inner hyphens)", o.sub("namespace"), k.Namespace)
		}
	}
	if v := o.get("port"); v != nil && !isNull(v) {
		if n := d.resolve(v); n != nil && n.Kind == yaml.ScalarNode && n.Tag == "!!str" && !isDigits(n.Value) {
			k.PortName = n.Value
			if len(k.PortName) > 63 || !dns1123Label.MatchString(k.PortName) {
				d.errf(v, CodeValue, "%s: %q is neither a port number (1 to 65535) nor a Service port name (lower-case letters, digits and inner hyphens)", o.sub("port"), k.PortName)
			}
		} else {
			k.PortNumber = d.port(v, o.sub("port"))
		}
	}
	o.end()
	return k
}

func isDigits(s string) bool {
	s = strings.TrimSpace(s)
	if s == "" {
		return false
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

// controlPlaneDiscovery decodes ControlPlane.spec.dns and spec.kubernetes into cp.
func (d *dec) controlPlaneDiscovery(spec *obj, cp *model.ControlPlane) {
	if do := spec.obj("dns"); do.present() {
		sv := do.get("servers")
		list := d.list(sv, do.sub("servers"))
		if sv == nil || (len(list) == 0 && !d.over) {
			d.errf(do.key("servers"), CodeSchema, "%s: list at least one server, e.g. servers: [\"10.0.0.10:53\"], or remove dns to use /etc/resolv.conf", do.sub("servers"))
		}
		for i, sn := range list {
			p := do.sub("servers") + "[" + strconv.Itoa(i) + "]"
			s, ok := d.str(sn, p)
			if !ok {
				continue
			}
			ap, err := netip.ParseAddrPort(s)
			if err != nil || ap.Port() == 0 {
				fix := "write ADDR:PORT with an IP address, e.g. 10.0.0.10:53 or [fd00::10]:53"
				if _, aerr := netip.ParseAddr(s); aerr == nil {
					fix = "add the port, e.g. " + s + ":53"
					if strings.Contains(s, ":") {
						fix = "add the port, e.g. [" + s + "]:53"
					}
				}
				d.errf(sn, CodeValue, "%s: %q is not a DNS server address; %s", p, s, fix)
				continue
			}
			cp.DNS.Servers = append(cp.DNS.Servers, ap.String())
		}
		do.end()
	}
	if ko := spec.obj("kubernetes"); ko.present() {
		cp.Kubernetes.Kubeconfig = d.strField(ko, "kubeconfig")
		ko.end()
	}
}
