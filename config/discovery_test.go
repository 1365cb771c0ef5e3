package config

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sluice-mesh/sluice/model"
)

// clusterDoc is a Cluster document whose spec is the given lines (indented by two).
func clusterDoc(spec ...string) string {
	return "apiVersion: sluice.dev/v1alpha1\nkind: Cluster\nmetadata: {name: c}\nspec:\n  " + strings.Join(spec, "\n  ") + "\n"
}

func TestDiscoveryBlocksDecode(t *testing.T) {
	for _, tc := range []struct {
		name string
		spec []string
		want model.Cluster
	}{
		{"dns name with defaults", []string{"dns: {name: backend.example.com, port: 8080}"},
			model.Cluster{DNS: &model.DNSDiscovery{Name: "backend.example.com", Port: 8080, MinRefresh: time.Second, MaxRefresh: 30 * time.Second}}},
		{"dns srv with bounds", []string{"dns: {srv: _http._tcp.backend.service.consul., minRefresh: 500ms, maxRefresh: 1m}"},
			model.Cluster{DNS: &model.DNSDiscovery{SRV: "_http._tcp.backend.service.consul.", MinRefresh: 500 * time.Millisecond, MaxRefresh: time.Minute}}},
		{"dns single-label name", []string{"dns: {name: backend, port: \"8080\"}"},
			model.Cluster{DNS: &model.DNSDiscovery{Name: "backend", Port: 8080, MinRefresh: time.Second, MaxRefresh: 30 * time.Second}}},
		{"kubernetes port name", []string{"kubernetes: {service: backend-api, namespace: prod, port: http}"},
			model.Cluster{Kubernetes: &model.KubernetesDiscovery{Service: "backend-api", Namespace: "prod", PortName: "http"}}},
		{"kubernetes port number and kubeconfig", []string{"kubernetes: {service: b, namespace: default, port: 8080, kubeconfig: /etc/kube.conf}"},
			model.Cluster{Kubernetes: &model.KubernetesDiscovery{Service: "b", Namespace: "default", PortNumber: 8080, Kubeconfig: "/etc/kube.conf"}}},
		{"kubernetes quoted number is a number", []string{"kubernetes: {service: b, namespace: default, port: \"9090\"}"},
			model.Cluster{Kubernetes: &model.KubernetesDiscovery{Service: "b", Namespace: "default", PortNumber: 9090}}},
		{"kubernetes without port", []string{"kubernetes: {service: b, namespace: default}"},
			model.Cluster{Kubernetes: &model.KubernetesDiscovery{Service: "b", Namespace: "default"}}},
		{"both beside fixed endpoints", []string{
			"endpoints: [{address: 10.0.0.1:80}]",
			"dns: {name: b.example, port: 80}",
			"kubernetes: {service: b, namespace: default, port: 80}",
		}, model.Cluster{
			Endpoints:  []model.Endpoint{{Address: "10.0.0.1:80", Weight: 1}},
			DNS:        &model.DNSDiscovery{Name: "b.example", Port: 80, MinRefresh: time.Second, MaxRefresh: 30 * time.Second},
			Kubernetes: &model.KubernetesDiscovery{Service: "b", Namespace: "default", PortNumber: 80},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, ds := LoadBytes("x.yaml", []byte(clusterDoc(tc.spec...)))
			if ds.HasErrors() || cfg == nil {
				t.Fatalf("errors:\n%s", ds)
			}
			got := *cfg.Cluster("c")
			want := tc.want
			if d := cmp.Diff(want.Endpoints, got.Endpoints); d != "" {
				t.Errorf("endpoints (-want +got):\n%s", d)
			}
			if d := cmp.Diff(want.DNS, got.DNS); d != "" {
				t.Errorf("dns (-want +got):\n%s", d)
			}
			if d := cmp.Diff(want.Kubernetes, got.Kubernetes); d != "" {
				t.Errorf("kubernetes (-want +got):\n%s", d)
			}
			if got.Warmup != DefaultWarmup {
				t.Errorf("warmup %s, want the default %s", got.Warmup, DefaultWarmup)
			}
		})
	}
}

func TestDiscoveryBlocksRefuseBadInput(t *testing.T) {
	for _, tc := range []struct {
		name string
		spec []string
		want string // the one error, FILE:LINE: message
	}{
		{"neither endpoints nor discovery", []string{"protocol: http1"},
			"x.yaml:4: spec.endpoints is required: list the addresses, e.g. endpoints: [{address: 127.0.0.1:9001}], or discover them with dns or kubernetes"},
		{"dns null", []string{"dns:"},
			"x.yaml:4: spec.endpoints is required: list the addresses, e.g. endpoints: [{address: 127.0.0.1:9001}], or discover them with dns or kubernetes"},
		{"dns empty", []string{"dns: {}"},
			"x.yaml:5: spec.dns: set name and port (A/AAAA records), e.g. {name: backend.example.com, port: 8080}, or srv, e.g. {srv: _http._tcp.backend.example.com}"},
		{"dns name and srv", []string{"dns:", "  name: a.example", "  port: 80", "  srv: _http._tcp.a.example"},
			"x.yaml:8: spec.dns: set either name (A/AAAA records, with port) or srv, not both"},
		{"dns name without port", []string{"dns: {name: a.example}"},
			"x.yaml:5: spec.dns.port is required: give the port the endpoints listen on, e.g. port: 8080"},
		{"dns port zero", []string{"dns:", "  name: a.example", "  port: 0"},
			"x.yaml:7: spec.dns.port: 0 is not a port; use 1 to 65535"},
		{"dns port too large", []string{"dns: {name: a.example, port: 65536}"},
			"x.yaml:5: spec.dns.port: 65536 is not a port; use 1 to 65535"},
		{"dns port a word", []string{"dns: {name: a.example, port: http}"},
			"x.yaml:5: spec.dns.port: want an integer, got the string \"http\""},
		{"dns name with a space", []string{"dns: {name: \"a b.example\", port: 80}"},
			"x.yaml:5: spec.dns.name: \"a b.example\" is not a host name (labels of letters, digits and inner hyphens, separated by dots)"},
		{"dns name an IP", []string{"dns: {name: 10.0.0.1, port: 80}"},
			"x.yaml:5: spec.dns.name: \"10.0.0.1\" is an IP address, not a name: list it under endpoints instead"},
		{"dns name with host:port", []string{"dns: {name: \"a.example:80\", port: 80}"},
			"x.yaml:5: spec.dns.name: \"a.example:80\" is not a host name (labels of letters, digits and inner hyphens, separated by dots)"},
		{"dns name label too long", []string{"dns: {name: " + strings.Repeat("a", 64) + ".example, port: 80}"},
			"x.yaml:5: spec.dns.name: \"" + strings.Repeat("a", 64) + ".example\" has a label longer than 63 characters"},
		{"dns name empty", []string{"dns: {name: \"\", port: 80}"},
			"x.yaml:5: spec.dns.name: \"\" is empty"},
		{"srv not an srv name", []string{"dns: {srv: backend.example.com}"},
			"x.yaml:5: spec.dns.srv: \"backend.example.com\" is not an SRV name: write _SERVICE._tcp.DOMAIN, e.g. _http._tcp.backend.example.com"},
		{"srv udp", []string{"dns: {srv: _dns._udp.example.com}"},
			"x.yaml:5: spec.dns.srv: \"_dns._udp.example.com\" names protocol \"_udp\"; Sluice's endpoints speak HTTP over TCP: use _tcp"},
		{"srv bad service label", []string{"dns: {srv: \"_h ttp._tcp.example.com\"}"},
			"x.yaml:5: spec.dns.srv: \"_h ttp._tcp.example.com\" has a bad service label \"_h ttp\": write _ then letters, digits and inner hyphens"},
		{"srv bad domain", []string{"dns: {srv: _http._tcp.exa..mple}"},
			"x.yaml:5: spec.dns.srv: \"_http._tcp.exa..mple\" has a domain \"exa..mple\" that is not a host name (labels of letters, digits and inner hyphens, separated by dots)"},
		{"srv with port", []string{"dns:", "  srv: _http._tcp.example.com", "  port: 80"},
			"x.yaml:7: spec.dns.port: an SRV record carries its own port; remove port"},
		{"refresh bounds reversed", []string{"dns:", "  name: a.example", "  port: 80", "  minRefresh: 1m", "  maxRefresh: 10s"},
			"x.yaml:8: spec.dns.minRefresh: 1m0s is longer than maxRefresh 10s; minRefresh must not exceed maxRefresh"},
		{"min refresh zero", []string{"dns:", "  name: a.example", "  port: 80", "  minRefresh: 0s"},
			"x.yaml:8: spec.dns.minRefresh: must be more than 0"},
		{"max refresh zero", []string{"dns:", "  name: a.example", "  port: 80", "  maxRefresh: 0"},
			"x.yaml:8: spec.dns.maxRefresh: must be more than 0"},
		{"max refresh negative", []string{"dns: {name: a.example, port: 80, maxRefresh: -5s}"},
			"x.yaml:5: spec.dns.maxRefresh: duration -5s is negative; use 0 or more"},
		{"dns unknown field", []string{"dns: {name: a.example, port: 80, ttl: 5}"},
			"x.yaml:5: spec.dns: unknown field \"ttl\"; known fields: maxRefresh, minRefresh, name, port, srv"},
		{"dns typo", []string{"dns: {name: a.example, port: 80, minRefesh: 5s}"},
			"x.yaml:5: spec.dns: unknown field \"minRefesh\"; did you mean \"minRefresh\"?"},
		{"dns a list", []string{"dns: [a.example]"},
			"x.yaml:5: spec.dns: want a mapping, got a list"},
		{"kubernetes no service", []string{"kubernetes: {namespace: default}"},
			"x.yaml:5: spec.kubernetes.service is required: name the Service whose EndpointSlices to watch, e.g. service: backend-api"},
		{"kubernetes no namespace", []string{"kubernetes: {service: b}"},
			"x.yaml:5: spec.kubernetes.namespace is required: name the Service's namespace, e.g. namespace: default"},
		{"kubernetes upper-case service", []string{"kubernetes: {service: Backend, namespace: default}"},
			"x.yaml:5: spec.kubernetes.service: \"Backend\" is not a Service name (at most 63 lower-case letters, digits and inner hyphens, starting with a letter)"},
		{"kubernetes service starting with a digit", []string{"kubernetes: {service: 1b, namespace: default}"},
			"x.yaml:5: spec.kubernetes.service: \"1b\" is not a Service name (at most 63 lower-case letters, digits and inner hyphens, starting with a letter)"},
		{"kubernetes bad namespace", []string{"kubernetes: {service: b, namespace: my_ns}"},
			"x.yaml:5: spec.kubernetes.namespace: \"my_ns\" is not a namespace name (at most 63 lower-case letters, digits and inner hyphens)"},
		{"kubernetes namespace too long", []string{"kubernetes: {service: b, namespace: " + strings.Repeat("n", 64) + "}"},
			"x.yaml:5: spec.kubernetes.namespace: \"" + strings.Repeat("n", 64) + "\" is not a namespace name (at most 63 lower-case letters, digits and inner hyphens)"},
		{"kubernetes port zero", []string{"kubernetes: {service: b, namespace: default, port: 0}"},
			"x.yaml:5: spec.kubernetes.port: 0 is not a port; use 1 to 65535"},
		{"kubernetes port too large", []string{"kubernetes: {service: b, namespace: default, port: 70000}"},
			"x.yaml:5: spec.kubernetes.port: 70000 is not a port; use 1 to 65535"},
		{"kubernetes bad port name", []string{"kubernetes: {service: b, namespace: default, port: HTTP_1}"},
			"x.yaml:5: spec.kubernetes.port: \"HTTP_1\" is neither a port number (1 to 65535) nor a Service port name (lower-case letters, digits and inner hyphens)"},
		{"kubernetes unknown field", []string{"kubernetes: {service: b, namespace: default, ports: http}"},
			"x.yaml:5: spec.kubernetes: unknown field \"ports\"; did you mean \"port\"?"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, ds := LoadBytes("x.yaml", []byte(clusterDoc(tc.spec...)))
			if cfg != nil {
				t.Fatalf("accepted: %+v", cfg.Cluster("c"))
			}
			if got := one(t, ds.Errors()).String(); got != tc.want {
				t.Errorf("got  %s\nwant %s", got, tc.want)
			}
		})
	}
}

const cpHeader = "apiVersion: sluice.dev/v1alpha1\nkind: ControlPlane\nmetadata: {name: default}\nspec:\n"

func TestControlPlaneDiscoverySettings(t *testing.T) {
	cfg, ds := LoadBytes("x.yaml", []byte(cpHeader+"  dns: {servers: [\"10.0.0.10:53\", \"[fd00::10]:5353\"]}\n  kubernetes: {kubeconfig: /etc/sluice/kubeconfig}\n"))
	if ds.HasErrors() {
		t.Fatal(ds)
	}
	if d := cmp.Diff([]string{"10.0.0.10:53", "[fd00::10]:5353"}, cfg.ControlPlane.DNS.Servers); d != "" {
		t.Errorf("servers (-want +got):\n%s", d)
	}
	if cfg.ControlPlane.Kubernetes.Kubeconfig != "/etc/sluice/kubeconfig" {
		t.Errorf("kubeconfig %q", cfg.ControlPlane.Kubernetes.Kubeconfig)
	}
	cfg, ds = LoadBytes("x.yaml", []byte(cpHeader+"  stateDir: /tmp/x\n"))
	if ds.HasErrors() || cfg.ControlPlane.DNS.Servers != nil || cfg.ControlPlane.Kubernetes.Kubeconfig != "" {
		t.Errorf("defaults: %v %+v", ds, cfg.ControlPlane)
	}

	for _, tc := range []struct{ name, spec, want string }{
		{"no port", "  dns: {servers: [10.0.0.10]}\n", "x.yaml:5: spec.dns.servers[0]: \"10.0.0.10\" is not a DNS server address; add the port, e.g. 10.0.0.10:53"},
		{"ipv6 no port", "  dns: {servers: [\"fd00::10\"]}\n", "x.yaml:5: spec.dns.servers[0]: \"fd00::10\" is not a DNS server address; add the port, e.g. [fd00::10]:53"},
		{"host name", "  dns: {servers: [\"dns.example:53\"]}\n", "x.yaml:5: spec.dns.servers[0]: \"dns.example:53\" is not a DNS server address; write ADDR:PORT with an IP address, e.g. 10.0.0.10:53 or [fd00::10]:53"},
		{"port zero", "  dns: {servers: [\"10.0.0.10:0\"]}\n", "x.yaml:5: spec.dns.servers[0]: \"10.0.0.10:0\" is not a DNS server address; write ADDR:PORT with an IP address, e.g. 10.0.0.10:53 or [fd00::10]:53"},
		{"port too large", "  dns: {servers: [\"10.0.0.10:65536\"]}\n", "x.yaml:5: spec.dns.servers[0]: \"10.0.0.10:65536\" is not a DNS server address; write ADDR:PORT with an IP address, e.g. 10.0.0.10:53 or [fd00::10]:53"},
		{"empty list", "  dns:\n    servers: []\n", "x.yaml:6: spec.dns.servers: list at least one server, e.g. servers: [\"10.0.0.10:53\"], or remove dns to use /etc/resolv.conf"},
		{"no servers", "  dns: {search: [a]}\n", "x.yaml:5: spec.dns: unknown field \"search\"; known fields: servers"},
		{"kubernetes unknown field", "  kubernetes: {kubeConfig: x}\n", "x.yaml:5: spec.kubernetes: unknown field \"kubeConfig\"; did you mean \"kubeconfig\"?"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, ds := LoadBytes("x.yaml", []byte(cpHeader+tc.spec))
			found := false
			for _, d := range ds.Errors() {
				found = found || d.String() == tc.want
			}
			if !found {
				t.Errorf("want %s\ngot:\n%s", tc.want, ds)
			}
		})
	}
}

func TestWarmupDefaultAndOverride(t *testing.T) {
	for spec, want := range map[string]time.Duration{
		"endpoints: [{address: 127.0.0.1:1}]":               DefaultWarmup,
		"endpoints: [{address: 127.0.0.1:1}]\n  warmup: 0":  0,
		"endpoints: [{address: 127.0.0.1:1}]\n  warmup: 5s": 5 * time.Second,
	} {
		cfg, ds := LoadBytes("x.yaml", []byte(clusterDoc(spec)))
		if ds.HasErrors() {
			t.Fatal(ds)
		}
		if got := cfg.Cluster("c").Warmup; got != want {
			t.Errorf("%q: warmup %s, want %s", spec, got, want)
		}
	}
}
