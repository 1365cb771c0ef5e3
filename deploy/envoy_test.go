package deploy

import (
	"os"
	"path/filepath"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	// Register the typed_config types the bootstraps use, so that protojson can resolve them.
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
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
	orig, err := os.ReadFile(src)
	if os.IsNotExist(err) {
		t.Skip("deploy/envoy/envoy.yaml does not exist yet; nothing to compare the Kubernetes copy with")
	}
	if err != nil {
		t.Fatal(err)
	}
	want := parseBootstrap(t, "deploy/envoy/envoy.yaml", orig)
	got := parseBootstrap(t, "ConfigMap envoy-bootstrap", []byte(findConfigMap(t, loadObjects(t), "envoy-bootstrap")["envoy.yaml"]))

	if !proto.Equal(want.GetDynamicResources(), got.GetDynamicResources()) {
		t.Errorf("dynamic_resources differ:\ndeploy/envoy: %v\nkubernetes:   %v", want.GetDynamicResources(), got.GetDynamicResources())
	}
	if want.GetNode().GetCluster() != got.GetNode().GetCluster() {
		t.Errorf("node.cluster: deploy/envoy %q, kubernetes %q", want.GetNode().GetCluster(), got.GetNode().GetCluster())
	}
	// Every static cluster of deploy/envoy is here too, with the same protocol options.
	for _, wc := range want.GetStaticResources().GetClusters() {
		gc := clusterNamed(got, wc.GetName())
		if gc == nil {
			t.Errorf("static cluster %q of deploy/envoy is missing", wc.GetName())
			continue
		}
		if !proto.Equal(protoOptions(wc), protoOptions(gc)) {
			t.Errorf("cluster %s protocol options differ: deploy/envoy %v, kubernetes %v", wc.GetName(), protoOptions(wc), protoOptions(gc))
		}
	}
}

func clusterNamed(b *bootstrapv3.Bootstrap, name string) *clusterv3.Cluster {
	for _, c := range b.GetStaticResources().GetClusters() {
		if c.GetName() == name {
			return c
		}
	}
	return nil
}

// protoOptions returns the HTTP protocol options of c (how it talks to its upstream).
func protoOptions(c *clusterv3.Cluster) *clusterv3.Cluster {
	return &clusterv3.Cluster{TypedExtensionProtocolOptions: c.GetTypedExtensionProtocolOptions()}
}

func findConfigMap(t *testing.T, objs []object, name string) map[string]string {
	t.Helper()
	return find[corev1.ConfigMap](t, objs, name).Data
}
