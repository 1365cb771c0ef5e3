package deploy

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	// Register the typed_config types the bootstraps use, so that protojson can resolve them.
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	corev1 "k8s.io/api/core/v1"
	k8syaml "sigs.k8s.io/yaml"
)

// parseBootstrap decodes an Envoy bootstrap strictly (unknown fields fail) and runs the
// generated validation rules over it.
func parseBootstrap(t *testing.T, what string, y []byte) *bootstrapv3.Bootstrap {
	t.Helper()
	j, err := k8syaml.YAMLToJSON(y)
	if err != nil {
		t.Fatalf("%s: envoy bootstrap YAML: %v", what, err)
	}
	var b bootstrapv3.Bootstrap
	if err := (protojson.UnmarshalOptions{}).Unmarshal(j, &b); err != nil {
		t.Fatalf("%s: envoy bootstrap does not decode into envoy.config.bootstrap.v3.Bootstrap: %v", what, err)
	}
	if err := b.ValidateAll(); err != nil {
		t.Fatalf("%s: envoy bootstrap invalid: %v", what, err)
	}
	return &b
}

// xdsCluster returns the static cluster the ADS config names.
func xdsCluster(t *testing.T, b *bootstrapv3.Bootstrap) string {
	t.Helper()
	ads := b.GetDynamicResources().GetAdsConfig()
	if ads == nil || len(ads.GetGrpcServices()) != 1 {
		t.Fatalf("bootstrap has no single ADS gRPC service: %v", ads)
	}
	name := ads.GetGrpcServices()[0].GetEnvoyGrpc().GetClusterName()
	if name == "" {
		t.Fatal("ADS does not use an envoy_grpc cluster")
	}
	if b.GetDynamicResources().GetLdsConfig().GetAds() == nil || b.GetDynamicResources().GetCdsConfig().GetAds() == nil {
		t.Error("LDS and CDS must come over ADS")
	}
	return name
}

// xdsAddress returns the host and port the bootstrap's xDS cluster dials.
func xdsAddress(t *testing.T, b *bootstrapv3.Bootstrap) (string, uint32) {
	t.Helper()
	name := xdsCluster(t, b)
	for _, c := range b.GetStaticResources().GetClusters() {
		if c.GetName() != name {
			continue
		}
		eps := c.GetLoadAssignment().GetEndpoints()
		if len(eps) != 1 || len(eps[0].GetLbEndpoints()) != 1 {
			t.Fatalf("xDS cluster %s: want exactly one endpoint", name)
		}
		sa := eps[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress()
		if c.GetTypedExtensionProtocolOptions()["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"] == nil &&
			c.GetHttp2ProtocolOptions() == nil { //nolint:staticcheck // accept the deprecated field too
			t.Errorf("xDS cluster %s does not speak HTTP/2 (gRPC needs it)", name)
		}
		return sa.GetAddress(), sa.GetPortValue()
	}
	t.Fatalf("ADS names cluster %q, which the bootstrap does not define", name)
	return "", 0
}

func hasListenerOn(b *bootstrapv3.Bootstrap, port uint32) bool {
	for _, l := range b.GetStaticResources().GetListeners() {
		if l.GetAddress().GetSocketAddress().GetPortValue() == port {
			return true
		}
	}
	return false
}

// TestEnvoyBootstrapMatchesDeployEnvoy checks that the Kubernetes copy of the bootstrap is
// deploy/envoy/envoy.yaml's: the same dynamic resources and ADS, the same node cluster,
// only the xDS address (the sluice Service) differs, plus the static health listener.
func TestEnvoyBootstrapMatchesDeployEnvoy(t *testing.T) {
	src := filepath.Join(repoRoot, "deploy", "envoy", "envoy.yaml")
	orig, err := os.ReadFile(src) // a tracked file: missing is a failure, never a skip
	if err != nil {
		t.Fatal(err)
	}
	want := parseBootstrap(t, "deploy/envoy/envoy.yaml", orig)
	got := parseBootstrap(t, "ConfigMap envoy-bootstrap", []byte(findConfigMap(t, loadObjects(t), "envoy-bootstrap")["envoy.yaml"]))
	for _, d := range bootstrapDiffs(t, want, got) {
		t.Error(d)
	}
}

// bootstrapDiffs reports how got (the Kubernetes copy) departs from want (deploy/envoy)
// beyond what Kubernetes needs: the xDS cluster's address and discovery type, and routes
// answered directly (the liveness /healthz). Empty means equal.
func bootstrapDiffs(t *testing.T, want, got *bootstrapv3.Bootstrap) []string {
	t.Helper()
	w, g := normalizeBootstrap(t, want), normalizeBootstrap(t, got)
	if proto.Equal(w, g) {
		return nil
	}
	opts := protojson.MarshalOptions{Multiline: true, Indent: "  "}
	return []string{fmt.Sprintf("deploy/kubernetes/envoy.yaml's bootstrap is not deploy/envoy/envoy.yaml's "+
		"(but for the xDS address and /healthz); update the ConfigMap.\ndeploy/envoy, normalized:\n%s\nkubernetes, normalized:\n%s",
		opts.Format(w), opts.Format(g))}
}

// normalizeBootstrap clears what may differ between a local and a Kubernetes bootstrap.
func normalizeBootstrap(t *testing.T, b *bootstrapv3.Bootstrap) *bootstrapv3.Bootstrap {
	t.Helper()
	b = proto.Clone(b).(*bootstrapv3.Bootstrap)
	b.GetNode().Id = ""
	xds := xdsCluster(t, b)
	for _, c := range b.GetStaticResources().GetClusters() {
		if c.GetName() == xds {
			c.ClusterDiscoveryType = nil
			c.LoadAssignment = nil
		}
	}
	for _, l := range b.GetStaticResources().GetListeners() {
		for _, fc := range l.GetFilterChains() {
			for _, f := range fc.GetFilters() {
				if f.GetTypedConfig() == nil {
					continue
				}
				msg, err := f.GetTypedConfig().UnmarshalNew()
				if err != nil {
					t.Fatal(err)
				}
				if hcm, ok := msg.(*hcmv3.HttpConnectionManager); ok {
					for _, vh := range hcm.GetRouteConfig().GetVirtualHosts() {
						vh.Routes = slices.DeleteFunc(vh.Routes, func(r *routev3.Route) bool { return r.GetDirectResponse() != nil })
					}
				}
				// Re-encode deterministically so that equal configs compare equal.
				raw, err := proto.MarshalOptions{Deterministic: true}.Marshal(msg)
				if err != nil {
					t.Fatal(err)
				}
				f.ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: &anypb.Any{TypeUrl: f.GetTypedConfig().GetTypeUrl(), Value: raw}}
			}
		}
	}
	return b
}

// TestBootstrapDiffs checks the comparison: the Kubernetes copy turned back into a local
// one (xDS on 127.0.0.1, no /healthz) compares equal; other changes are reported.
func TestBootstrapDiffs(t *testing.T) {
	k8sText := findConfigMap(t, loadObjects(t), "envoy-bootstrap")["envoy.yaml"]
	k8s := parseBootstrap(t, "ConfigMap envoy-bootstrap", []byte(k8sText))
	local := strings.NewReplacer("type: STRICT_DNS", "type: STATIC", "sluice.sluice.svc.cluster.local", "127.0.0.1").Replace(k8sText)
	local = regexp.MustCompile(`(?m)^\s*- match: \{path: /healthz\}\n.*direct_response.*\n`).ReplaceAllString(local, "")
	if strings.Contains(local, "/healthz") || !strings.Contains(local, "127.0.0.1, port_value: 18000") {
		t.Fatalf("could not turn the Kubernetes bootstrap into a local one:\n%s", local)
	}
	if d := bootstrapDiffs(t, parseBootstrap(t, "local", []byte(local)), k8s); len(d) > 0 {
		t.Errorf("same bootstrap but for the xDS address reported as different: %v", d)
	}
	for _, change := range [][2]string{
		{"cluster: front-proxy", "cluster: edge"},
		{"set_node_on_first_message_only: true", "set_node_on_first_message_only: false"},
		{"interval: 30s", "interval: 10s"},
		{"match: {path: /ready}", "match: {path: /readyz}"},
		{"port_value: 9901", "port_value: 9911"},
	} {
		changed := strings.Replace(local, change[0], change[1], 1)
		if changed == local {
			t.Fatalf("change %q does not apply", change[0])
		}
		if d := bootstrapDiffs(t, parseBootstrap(t, "local", []byte(changed)), k8s); len(d) == 0 {
			t.Errorf("change %q -> %q not reported", change[0], change[1])
		}
	}
}

func findConfigMap(t *testing.T, objs []object, name string) map[string]string {
	t.Helper()
	return find[corev1.ConfigMap](t, objs, name).Data
}
