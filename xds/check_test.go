package xds

import (
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/sluice-mesh/sluice/model"
)

func checkBase(t *testing.T, shape Shape) *Resources {
	t.Helper()
	res, err := Translate(e2eSnapshot(1, "127.0.0.1:1", []string{"127.0.0.1:2"}, 10), shape)
	if err != nil {
		t.Fatal(err)
	}
	if err := Check(res); err != nil {
		t.Fatalf("valid resources refused: %v", err)
	}
	return res
}

// setHCM rewrites the HttpConnectionManager of the first listener (either shape).
func setHCM(t *testing.T, r *Resources, f func(*hcmv3.HttpConnectionManager)) {
	t.Helper()
	l := r.Listeners[0]
	if api := l.GetApiListener(); api != nil {
		hcm := &hcmv3.HttpConnectionManager{}
		if err := api.ApiListener.UnmarshalTo(hcm); err != nil {
			t.Fatal(err)
		}
		f(hcm)
		api.ApiListener = mustAny(hcm)
		return
	}
	fl := l.FilterChains[0].Filters[0]
	hcm := &hcmv3.HttpConnectionManager{}
	if err := fl.GetTypedConfig().UnmarshalTo(hcm); err != nil {
		t.Fatal(err)
	}
	f(hcm)
	fl.ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(hcm)}
}

func TestCheckCatchesWhatClientsReject(t *testing.T) {
	cases := []struct {
		name   string
		shape  Shape
		break_ func(*testing.T, *Resources)
		want   string
	}{
		{"all-zero weights", ShapeGRPC, func(_ *testing.T, r *Resources) {
			for _, w := range r.Routes[0].VirtualHosts[0].Routes[1].GetRoute().GetWeightedClusters().Clusters {
				w.Weight = wrapperspb.UInt32(0)
			}
		}, "weights sum to 0"},
		{"total_weight set", ShapeEnvoy, func(_ *testing.T, r *Resources) {
			r.Routes[0].VirtualHosts[0].Routes[1].GetRoute().GetWeightedClusters().TotalWeight = wrapperspb.UInt32(100)
		}, "total_weight"},
		{"unknown cluster", ShapeEnvoy, func(_ *testing.T, r *Resources) {
			r.Clusters = r.Clusters[1:] // drop "canary"
		}, `cluster "canary" not present`},
		{"missing route configuration", ShapeGRPC, func(_ *testing.T, r *Resources) { r.Routes = nil }, `route configuration "svc" not present`},
		{"router filter missing in api_listener", ShapeGRPC, func(t *testing.T, r *Resources) {
			setHCM(t, r, func(h *hcmv3.HttpConnectionManager) { h.HttpFilters = nil })
		}, "last HTTP filter"},
		{"router filter not last", ShapeEnvoy, func(t *testing.T, r *Resources) {
			setHCM(t, r, func(h *hcmv3.HttpConnectionManager) {
				h.HttpFilters = append(h.HttpFilters, &hcmv3.HttpFilter{Name: "envoy.filters.http.cors", ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(&structpb.Struct{})}})
			})
		}, "last HTTP filter"},
		{"locality weight 0", ShapeGRPC, func(_ *testing.T, r *Resources) {
			r.Endpoints[0].Endpoints[0].LoadBalancingWeight = wrapperspb.UInt32(0)
		}, "locality 0 weight"},
		{"no locality", ShapeGRPC, func(_ *testing.T, r *Resources) { r.Endpoints[0].Endpoints[0].Locality = nil }, "has no locality"},
		{"EDS cluster without endpoints", ShapeEnvoy, func(_ *testing.T, r *Resources) { r.Endpoints = r.Endpoints[1:] }, "has no endpoints resource"},
		{"bad regex", ShapeEnvoy, func(_ *testing.T, r *Resources) {
			h := r.Routes[0].VirtualHosts[0].Routes[0].Match.Headers[0]
			h.HeaderMatchSpecifier = headerMatcher(model.HeaderMatch{Name: "x", Value: model.StringMatch{Regex: "a("}}).HeaderMatchSpecifier
		}, "bad regex"},
		{"ValidateAll: config source without specifier", ShapeEnvoy, func(_ *testing.T, r *Resources) {
			r.Clusters[0].EdsClusterConfig.EdsConfig = &corev3.ConfigSource{}
		}, "value is required"},
		{"duplicate listener", ShapeGRPC, func(_ *testing.T, r *Resources) {
			r.Listeners = append(r.Listeners, r.Listeners[0])
		}, "defined twice"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := checkBase(t, c.shape)
			c.break_(t, r)
			err := Check(r)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Check = %v, want an error containing %q", err, c.want)
			}
		})
	}
}
