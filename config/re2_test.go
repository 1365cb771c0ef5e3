package config

import (
	"strings"
	"testing"
)

// A header regex over Envoy's default RE2 program size is accepted (the router serves it)
// with a warning at its line, since the xDS server will refuse routes using it.
func TestOversizedRegexWarns(t *testing.T) {
	doc := `apiVersion: sluice.dev/v1alpha1
kind: Cluster
metadata: {name: a}
spec:
  endpoints: [{address: 127.0.0.1:1}]
---
apiVersion: sluice.dev/v1alpha1
kind: Listener
metadata: {name: l}
spec:
  address: 127.0.0.1:8080
  routes: [{cluster: a}]
  internalTraffic:
    headers:
      - {name: x-test, regex: "` + strings.Repeat(`/asdf/.*`, 6) + `"}
      - {name: x-small, regex: "v[0-9]+"}
`
	cfg, ds := LoadBytes("big.yaml", []byte(doc))
	if cfg == nil {
		t.Fatalf("refused: %v", ds)
	}
	if len(ds) != 1 || !strings.HasPrefix(ds[0].String(), "big.yaml:15: warning:") || !strings.Contains(ds[0].String(), "RE2 program") {
		t.Fatalf("diagnostics %v, want one warning at line 15 about the RE2 program size", ds)
	}
}
