package xds

import (
	"bytes"
	"encoding/json"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/sluice-mesh/sluice/config"
	"github.com/sluice-mesh/sluice/model"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

// rolloutSnapshot does what the analyzer does for a rollout in progress: every route
// owned by a canary rollout (its stable service, on its ingress when named) gets the
// split stable/canary at canaryWeight, the rollout's header and mirror routes to the
// canary, and the canary as internal-traffic cluster.
func rolloutSnapshot(t *testing.T, cfg *model.Config, version uint64, canaryWeight int) *model.Snapshot {
	t.Helper()
	snap := &model.Snapshot{Version: version, Clusters: slices.Clone(cfg.Clusters)}
	for _, l := range cfg.Listeners {
		l.Routes = slices.Clone(l.Routes)
		for i := range l.Routes {
			rt := &l.Routes[i]
			for _, r := range cfg.Rollouts {
				c := r.Canary
				if c == nil || rt.Cluster != c.StableService || (c.StableIngress != "" && c.StableIngress != l.Name) {
					continue
				}
				rt.Rollout = r.Name
				rt.Split = []model.WeightedCluster{{Cluster: c.StableService, Weight: 100 - canaryWeight}, {Cluster: c.CanaryService, Weight: canaryWeight}}
				rt.InternalCluster = c.CanaryService
				for _, s := range c.Steps {
					if h := s.SetHeaderRoute; h != nil && len(h.Match) > 0 {
						rt.HeaderRoutes = append(rt.HeaderRoutes, model.HeaderRoute{Name: h.Name, Headers: h.Match, Cluster: c.CanaryService})
					}
					if m := s.SetMirrorRoute; m != nil && len(m.Match) > 0 {
						rt.Mirrors = append(rt.Mirrors, model.Mirror{Name: m.Name, Matches: m.Match, Percentage: m.Percentage, Cluster: c.CanaryService})
					}
				}
			}
		}
		snap.Listeners = append(snap.Listeners, l)
	}
	return snap
}

func loadConfig(t *testing.T, path string) *model.Config {
	t.Helper()
	cfg, diags := config.Load(path)
	if cfg == nil {
		t.Fatalf("config.Load(%s): %v", path, diags)
	}
	return cfg
}

// stableJSON renders resources as indented JSON that does not change between runs
// (protojson adds random whitespace on purpose; compacting and indenting removes it).
func stableJSON(t *testing.T, r *Resources) []byte {
	t.Helper()
	enc := func(msgs []proto.Message) []json.RawMessage {
		out := []json.RawMessage{}
		for _, m := range msgs {
			b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			var c bytes.Buffer
			if err := json.Compact(&c, b); err != nil {
				t.Fatal(err)
			}
			out = append(out, json.RawMessage(c.Bytes()))
		}
		return out
	}
	doc := struct {
		Listeners []json.RawMessage `json:"listeners"`
		Routes    []json.RawMessage `json:"routes"`
		Clusters  []json.RawMessage `json:"clusters"`
		Endpoints []json.RawMessage `json:"endpoints"`
	}{enc(msgs(r.Listeners)), enc(msgs(r.Routes)), enc(msgs(r.Clusters)), enc(msgs(r.Endpoints))}
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return append(b, '\n')
}

func msgs[T proto.Message](in []T) []proto.Message {
	out := make([]proto.Message, len(in))
	for i, m := range in {
		out[i] = m
	}
	return out
}

func TestTranslateGolden(t *testing.T) {
	fixtures := map[string]string{
		"mesh":    "testdata/mesh.yaml",
		"example": "../examples/sluice.yaml",
	}
	for name, path := range fixtures {
		if _, err := os.Stat(path); err != nil {
			t.Fatalf("fixture %s: %v", path, err)
		}
		cfg := loadConfig(t, path)
		for _, shape := range []Shape{ShapeEnvoy, ShapeGRPC} {
			t.Run(name+"/"+string(shape), func(t *testing.T) {
				res, err := Translate(rolloutSnapshot(t, cfg, 7, 10), shape)
				if err != nil {
					t.Fatal(err)
				}
				if err := Check(res); err != nil {
					t.Fatalf("Check: %v", err)
				}
				got := stableJSON(t, res)
				golden := filepath.Join("testdata", "golden", name+"."+string(shape)+".json")
				if *update {
					if err := os.WriteFile(golden, got, 0o644); err != nil {
						t.Fatal(err)
					}
				}
				want, err := os.ReadFile(golden)
				if err != nil {
					t.Fatalf("%v (run go test ./xds -run Golden -update to create it)", err)
				}
				if d := cmp.Diff(string(want), string(got)); d != "" {
					t.Fatalf("%s differs (-want +got; -update rewrites it):\n%s", golden, d)
				}
			})
		}
	}
}

func TestTranslateShapeContents(t *testing.T) {
	cfg := loadConfig(t, "testdata/mesh.yaml")
	snap := rolloutSnapshot(t, cfg, 7, 10)
	env, err := Translate(snap, ShapeEnvoy)
	if err != nil {
		t.Fatal(err)
	}
	grpcRes, err := Translate(snap, ShapeGRPC)
	if err != nil {
		t.Fatal(err)
	}
	names := func(r *Resources) (ls, cs []string) {
		for _, l := range r.Listeners {
			ls = append(ls, l.Name)
		}
		for _, c := range r.Clusters {
			cs = append(cs, c.Name)
		}
		return
	}
	el, ec := names(env)
	gl, gc := names(grpcRes)
	if d := cmp.Diff([]string{"orders"}, el); d != "" {
		t.Errorf("envoy listeners (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]string{"orders", "orders.mesh", "orders.mesh:10000", "orders:10000"}, gl); d != "" {
		t.Errorf("grpc API listeners: every non-* host and the listener name, also with the listener's port (-want +got):\n%s", d)
	}
	// Envoy gets a cluster of its own for mirror copies; proxyless clients do not mirror.
	if d := cmp.Diff([]string{"orders-canary", "orders-canary-internal", "orders-canary-mirror", "orders-shadow", "orders-stable", "static-site"}, ec); d != "" {
		t.Errorf("envoy clusters (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]string{"orders-canary", "orders-canary-internal", "orders-shadow", "orders-stable", "static-site"}, gc); d != "" {
		t.Errorf("grpc clusters (-want +got):\n%s", d)
	}
	if env.Listeners[0].GetAddress() == nil || grpcRes.Listeners[0].GetApiListener() == nil {
		t.Fatal("envoy listeners need a socket address, grpc ones an api_listener")
	}

	// Route order in the orders.mesh virtual host: internal, header, then the split
	// (stable and canary have different timeouts: a runtime-fraction route for the
	// stable, the rest to the canary), each first for POST /orders (mirrored), then not.
	var vh []string
	for _, v := range env.Routes[0].VirtualHosts {
		if v.Name == "orders.mesh" {
			for _, r := range v.Routes {
				vh = append(vh, r.Name)
			}
		}
	}
	want := []string{
		"orders-api/internal/0/mirror/shadow-posts/0", "orders-api/internal/0",
		"orders-api/header/canary-header/mirror/shadow-posts/0", "orders-api/header/canary-header",
		"orders-api/split/orders-stable/mirror/shadow-posts/0", "orders-api/split/orders-stable",
		"orders-api/mirror/shadow-posts/0", "orders-api",
	}
	if d := cmp.Diff(want, vh); d != "" {
		t.Errorf("route order (-want +got):\n%s", d)
	}
	// The internal route needs x-envoy-internal: true and the marker; every other
	// route strips the marker.
	for _, v := range env.Routes[0].VirtualHosts {
		for _, r := range v.Routes {
			internal := strings.Contains(r.Name, "/internal/")
			var hs []string
			for _, h := range r.GetMatch().GetHeaders() {
				hs = append(hs, h.Name)
			}
			if internal {
				if d := cmp.Diff([]string{InternalHeader, "x-internal-test"}, hs[:min(2, len(hs))]); d != "" {
					t.Errorf("internal route %s headers (-want +got):\n%s", r.Name, d)
				}
				if r.GetRoute().GetCluster() != "orders-canary-internal" {
					t.Errorf("internal route %s goes to %q", r.Name, r.GetRoute().GetCluster())
				}
			} else if !slices.Equal(r.RequestHeadersToRemove, []string{"x-internal-test"}) {
				t.Errorf("route %s strips %v, want the marker", r.Name, r.RequestHeadersToRemove)
			}
		}
	}
}

func TestTranslateDeterministicAndWeightIsRDSOnly(t *testing.T) {
	cfg := loadConfig(t, "testdata/mesh.yaml")
	for _, shape := range []Shape{ShapeEnvoy, ShapeGRPC} {
		a, err := Translate(rolloutSnapshot(t, cfg, 1, 10), shape)
		if err != nil {
			t.Fatal(err)
		}
		b, err := Translate(rolloutSnapshot(t, cfg, 2, 10), shape)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(stableJSON(t, a), stableJSON(t, b)) {
			t.Fatalf("%s: the same model gave different resources", shape)
		}
		c, err := Translate(rolloutSnapshot(t, cfg, 3, 60), shape)
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(a.Listeners, c.Listeners, protocmp.Transform()); d != "" {
			t.Errorf("%s: weight change touched listeners:\n%s", shape, d)
		}
		if d := cmp.Diff(a.Clusters, c.Clusters, protocmp.Transform()); d != "" {
			t.Errorf("%s: weight change touched clusters:\n%s", shape, d)
		}
		if d := cmp.Diff(a.Endpoints, c.Endpoints, protocmp.Transform()); d != "" {
			t.Errorf("%s: weight change touched endpoints:\n%s", shape, d)
		}
		if cmp.Equal(a.Routes, c.Routes, protocmp.Transform()) {
			t.Errorf("%s: weight change did not change the routes", shape)
		}
	}
}

func TestTranslateZeroWeightKeepsGRPCClusterSubscribed(t *testing.T) {
	cfg := loadConfig(t, "testdata/mesh.yaml")
	snap := rolloutSnapshot(t, cfg, 1, 0)
	g, err := Translate(snap, ShapeGRPC)
	if err != nil {
		t.Fatal(err)
	}
	e, err := Translate(snap, ShapeEnvoy)
	if err != nil {
		t.Fatal(err)
	}
	count := func(r *Resources) int {
		n := 0
		for _, v := range r.Routes[0].VirtualHosts {
			for _, rt := range v.Routes {
				if strings.Contains(rt.Name, "/keep/") {
					n++
					if rt.GetRoute().GetCluster() != "orders-canary" {
						t.Errorf("keep route %s → %q", rt.Name, rt.GetRoute().GetCluster())
					}
				}
			}
		}
		return n
	}
	if n := count(g); n != 2 { // one per virtual host holding the owned route
		t.Errorf("grpc keep routes = %d, want 2", n)
	}
	if n := count(e); n != 0 {
		t.Errorf("envoy keep routes = %d, want 0", n)
	}
}

func TestTranslateErrors(t *testing.T) {
	base := func() *model.Snapshot {
		return &model.Snapshot{
			Clusters:  []model.Cluster{{Name: "a", Endpoints: []model.Endpoint{{Address: "127.0.0.1:1"}}}},
			Listeners: []model.Listener{{Name: "l", Address: "127.0.0.1:80", Routes: []model.Route{{Name: "r", Cluster: "a"}}}},
		}
	}
	cases := map[string]func(*model.Snapshot){
		"hostname endpoint": func(s *model.Snapshot) { s.Clusters[0].Endpoints[0].Address = "backend.example:80" },
		"bad listener port": func(s *model.Snapshot) { s.Listeners[0].Address = "127.0.0.1:http" },
		"internal to unknown cluster": func(s *model.Snapshot) {
			s.Listeners[0].InternalTraffic = &model.InternalTraffic{Headers: []model.HeaderMatch{{Name: "x-i", Value: model.StringMatch{Exact: "1"}}},
				TrustedSources: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}
			s.Listeners[0].Routes[0].InternalCluster = "ghost"
		},
	}
	for name, mutate := range cases {
		t.Run(name, func(t *testing.T) {
			s := base()
			mutate(s)
			if _, err := Translate(s, ShapeEnvoy); err == nil {
				t.Fatal("Translate succeeded")
			}
		})
	}
	if _, err := Translate(base(), ShapeEnvoy); err != nil {
		t.Fatalf("base snapshot: %v", err)
	}
	if _, err := Translate(base(), "istio"); err == nil {
		t.Fatal("unknown shape accepted")
	}
}

// TestGRPCDomainsWithPort: for proxyless clients every host but "*" and prefix wildcards
// is also a domain with the listener's port (grpc-go matches :authority with its port);
// a host already written with that port is not doubled (Check refuses a domain in two
// virtual hosts), and Envoy's route configuration ignores ports instead.
func TestGRPCDomainsWithPort(t *testing.T) {
	snap := &model.Snapshot{
		Clusters: []model.Cluster{{Name: "a", Endpoints: []model.Endpoint{{Address: "127.0.0.1:1", Weight: 1}}}},
		Listeners: []model.Listener{{Name: "web", Address: "127.0.0.1:8080", Routes: []model.Route{
			{Name: "r", Hosts: []string{"api.example.com", "api.example.com:8080", "*.example.com", "www.*", "*"}, PathPrefix: "/", Cluster: "a"},
		}}},
	}
	for shape, want := range map[Shape]map[string][]string{
		ShapeGRPC: {"*": {"*"}, "*.example.com": {"*.example.com", "*.example.com:8080"}, "api.example.com": {"api.example.com"},
			"api.example.com:8080": {"api.example.com:8080"}, "www.*": {"www.*"}},
		ShapeEnvoy: {"*": {"*"}, "*.example.com": {"*.example.com"}, "api.example.com": {"api.example.com"},
			"api.example.com:8080": {"api.example.com:8080"}, "www.*": {"www.*"}},
	} {
		res, err := Translate(snap, shape)
		if err != nil {
			t.Fatal(err)
		}
		if err := Check(res); err != nil {
			t.Fatalf("%s: %v", shape, err)
		}
		got := map[string][]string{}
		for _, vh := range res.Routes[0].VirtualHosts {
			got[vh.Name] = vh.Domains
		}
		if d := cmp.Diff(want, got); d != "" {
			t.Errorf("%s domains (-want +got):\n%s", shape, d)
		}
	}
}
