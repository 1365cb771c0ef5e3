package ha

import (
	"os"
	"strings"
	"testing"

	"github.com/sluice-mesh/sluice/config"
)

// TestConfigDigest: the digest follows what decides and ignores where a replica binds.
func TestConfigDigest(t *testing.T) {
	raw, err := os.ReadFile("../examples/sluice.yaml")
	if err != nil {
		t.Fatal(err)
	}
	base := string(raw)
	digest := func(t *testing.T, src string) string {
		t.Helper()
		cfg, ds := config.LoadBytes("sluice.yaml", []byte(src))
		if ds.HasErrors() {
			t.Fatalf("config: %s", ds)
		}
		return ConfigDigest(cfg)
	}
	want := digest(t, base)
	if len(want) != 16 {
		t.Fatalf("digest %q", want)
	}
	for i := 0; i < 20; i++ { // maps and slices hash the same every time
		if d := digest(t, base); d != want {
			t.Fatalf("digest changed between two loads: %s, %s", want, d)
		}
	}
	edit := func(t *testing.T, old, new string) string {
		t.Helper()
		if !strings.Contains(base, old) {
			t.Fatalf("example has no %q", old)
		}
		return strings.Replace(base, old, new, 1)
	}
	for _, tc := range []struct{ name, old, new string }{
		{"listener address", "address: 127.0.0.1:8080", "address: 127.0.0.2:18080"},
		{"admin address", "address: 127.0.0.1:9900", "address: 127.0.0.1:19900"},
		{"xds server", "  stateDir: .sluice", "  xds: {address: 127.0.0.1:18000, ackTimeout: 3s}\n  stateDir: .sluice"},
		{"stateDir", "stateDir: .sluice", "stateDir: /var/lib/sluice"},
		{"etcd store", "  stateDir: .sluice", "  store: {etcd: {endpoints: [\"http://127.0.0.1:2379\"]}}"},
		{"comments and layout", "kind: Cluster\n", "kind: Cluster   # moved\n\n# a comment\n"},
	} {
		t.Run("same/"+tc.name, func(t *testing.T) {
			if d := digest(t, edit(t, tc.old, tc.new)); d != want {
				t.Errorf("digest %s, want %s: %s must not count", d, want, tc.name)
			}
		})
	}
	for _, tc := range []struct{ name, old, new string }{
		{"a step's weight", "setWeight: 25", "setWeight: 30"},
		{"a pause", "pause: {duration: 120s}", "pause: {duration: 121s}"},
		{"a query", "[1m]))\n            /", "[2m]))\n            /"},
		{"a condition", "result[0] <= 0.01", "result[0] <= 0.02"},
		{"an endpoint", "- address: 127.0.0.1:9002", "- address: 127.0.0.1:9003"},
		{"the revision", "sluice.dev/revision: v2", "sluice.dev/revision: v3"},
		{"a route", "pathPrefix: /\n", "pathPrefix: /api\n"},
		{"minRequests", "minRequests: 50", "minRequests: 51"},
		{"internal traffic marker", `value: "true"`, `value: "yes"`},
		{"warmup", "warmup: 10s", "warmup: 11s"},
	} {
		t.Run("differs/"+tc.name, func(t *testing.T) {
			if d := digest(t, edit(t, tc.old, tc.new)); d == want {
				t.Errorf("changing %s left the digest at %s", tc.name, d)
			}
		})
	}
}
