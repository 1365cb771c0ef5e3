// Package envoy holds the Envoy bootstrap for proxies steered by Sluice (envoy.yaml);
// its test parses the file strictly into the Bootstrap proto and validates it.
package envoy

import (
	"encoding/json"
	"os"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"gopkg.in/yaml.v3"

	// Register the router filter type used in typed_config.
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
)

func loadBootstrap(t *testing.T) *bootstrapv3.Bootstrap {
	t.Helper()
	raw, err := os.ReadFile("envoy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc any
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("envoy.yaml: %v", err)
	}
	js, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	b := &bootstrapv3.Bootstrap{}
	// Strict: unknown fields and unknown @types fail.
	if err := (protojson.UnmarshalOptions{DiscardUnknown: false}).Unmarshal(js, b); err != nil {
		t.Fatalf("envoy.yaml is not a Bootstrap: %v", err)
	}
	if err := b.ValidateAll(); err != nil {
		t.Fatalf("envoy.yaml: %v", err)
	}
	return b
}

func TestBootstrapParsesStrictlyAndValidates(t *testing.T) {
	b := loadBootstrap(t)
	dr := b.GetDynamicResources()
	ads := dr.GetAdsConfig()
	if ads.GetApiType().String() != "GRPC" || ads.GetTransportApiVersion().String() != "V3" {
		t.Errorf("ADS must be state-of-the-world gRPC v3 (Sluice refuses delta): %v", ads)
	}
	if dr.GetLdsConfig().GetAds() == nil || dr.GetCdsConfig().GetAds() == nil {
		t.Error("LDS and CDS must come over ADS")
	}
	if len(ads.GetGrpcServices()) != 1 {
		t.Fatalf("want one ADS gRPC service, got %v", ads.GetGrpcServices())
	}
	xdsName := ads.GetGrpcServices()[0].GetEnvoyGrpc().GetClusterName()
	clusters := map[string]bool{}
	for _, c := range b.GetStaticResources().GetClusters() {
		clusters[c.GetName()] = true
		if c.GetName() != xdsName {
			continue
		}
		addr := c.GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress()
		if addr.GetAddress() != "127.0.0.1" || addr.GetPortValue() != 18000 {
			t.Errorf("ADS goes to %s:%d, want Sluice's default xds address 127.0.0.1:18000", addr.GetAddress(), addr.GetPortValue())
		}
		opts := &upstreamhttpv3.HttpProtocolOptions{}
		a := c.GetTypedExtensionProtocolOptions()["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
		if a == nil || a.UnmarshalTo(opts) != nil || opts.GetExplicitHttpConfig().GetHttp2ProtocolOptions() == nil {
			t.Errorf("the xDS cluster must speak HTTP/2 (gRPC)")
		}
		if opts.GetExplicitHttpConfig().GetHttp2ProtocolOptions().GetConnectionKeepalive() == nil {
			t.Errorf("the xDS cluster should send HTTP/2 keepalives")
		}
	}
	if !clusters[xdsName] {
		t.Fatalf("ADS names cluster %q, which is not a static cluster", xdsName)
	}
	if b.GetAdmin().GetAddress().GetSocketAddress().GetPortValue() == 0 {
		t.Error("no admin endpoint")
	}
	if b.GetNode().GetCluster() == "" {
		t.Error("node.cluster is empty")
	}
	// RE2 limits raised in a static runtime layer (Envoy's default error level is 100).
	levels := map[string]float64{}
	for _, l := range b.GetLayeredRuntime().GetLayers() {
		for k, v := range l.GetStaticLayer().GetFields() {
			levels[k] = v.GetNumberValue()
		}
	}
	if levels["re2.max_program_size.error_level"] < 200 || levels["re2.max_program_size.warn_level"] != 100 {
		t.Errorf("RE2 program size levels %v: want error_level raised well over 100, warn_level 100", levels)
	}

	// Prometheus stats: a static listener routes /stats/prometheus to the admin cluster.
	found := false
	for _, l := range b.GetStaticResources().GetListeners() {
		for _, fc := range l.GetFilterChains() {
			for _, f := range fc.GetFilters() {
				hcm := &hcmv3.HttpConnectionManager{}
				if f.GetTypedConfig().UnmarshalTo(hcm) != nil {
					continue
				}
				for _, vh := range hcm.GetRouteConfig().GetVirtualHosts() {
					for _, r := range vh.GetRoutes() {
						if r.GetMatch().GetPath() == "/stats/prometheus" && clusters[r.GetRoute().GetCluster()] {
							found = true
						}
					}
				}
			}
		}
	}
	if !found {
		t.Error("no listener serves /stats/prometheus")
	}
}
