package config

import (
	"strings"
	"testing"
)

// TestWarnsBuiltInQueryOfXDSOnlyCluster: with an xDS server, a built-in measurement of a
// Cluster that no Listener route of the router reaches would never see its traffic (it
// goes through Envoy or gRPC clients): `sluice validate` warns, naming the rollout's
// analysis, the metric and the Cluster. Without xDS, or for a Cluster the router
// reaches (a route, or a route the rollout owns), or with a Prometheus address, it does not.
func TestWarnsBuiltInQueryOfXDSOnlyCluster(t *testing.T) {
	doc := func(xds bool, query, address string) string {
		cp := "apiVersion: sluice.dev/v1alpha1\nkind: ControlPlane\nmetadata: {name: default}\nspec:\n  admin: {address: 127.0.0.1:9900}\n"
		if xds {
			cp += "  xds: {address: 127.0.0.1:18000}\n"
		}
		tpl := "apiVersion: argoproj.io/v1alpha1\nkind: AnalysisTemplate\nmetadata: {name: a}\nspec:\n  metrics:\n" +
			"    - name: errors\n      successCondition: result[0] < 0.01\n      provider:\n        prometheus:\n" +
			"          address: \"" + address + "\"\n          query: '" + query + "'\n" +
			"    - name: judged\n      provider: {plugin: {sluice/judge: {signal: errors, baseline: grpc-a, canary: grpc-b}}}\n"
		clusters := ""
		for _, c := range []string{"grpc-a", "grpc-b"} {
			clusters += "---\napiVersion: sluice.dev/v1alpha1\nkind: Cluster\nmetadata: {name: " + c + "}\nspec: {endpoints: [{address: 127.0.0.1:9003}]}\n"
		}
		return argoDoc("            templates: [{templateName: a}]", tpl) + clusters + "---\n" + cp
	}
	warnings := func(t *testing.T, src string) []string {
		t.Helper()
		_, diags := LoadBytes("x.yaml", []byte(src))
		if diags.HasErrors() {
			t.Fatalf("errors: %v", diags.Errors())
		}
		var out []string
		for _, d := range diags {
			if strings.Contains(d.Message, "built-in store") {
				out = append(out, d.String())
			}
		}
		return out
	}
	const routed = `sum(rate(http_requests_total{cluster="canary"}[1m]))`
	const xdsOnly = `sum(rate(http_errors_total{cluster=~"grpc-.*"}[1m])) / sum(rate(http_requests_total{cluster="canary"}[1m]))`
	got := warnings(t, doc(true, xdsOnly, ""))
	want := []string{
		`metric "errors" analyses Cluster "grpc-a" with Sluice's built-in store (no address), but no Listener route of Sluice's router reaches "grpc-a"`,
		`metric "errors" analyses Cluster "grpc-b"`,
		`metric "judged" analyses Cluster "grpc-a"`,
		`metric "judged" analyses Cluster "grpc-b"`,
	}
	if len(got) != len(want) {
		t.Fatalf("warnings:\n%s", strings.Join(got, "\n"))
	}
	for i, w := range want {
		if !strings.Contains(got[i], w) || !strings.HasPrefix(got[i], "x.yaml:") || !strings.Contains(got[i], "warning: spec.strategy.canary.steps[1].analysis") {
			t.Errorf("warning %d: %s\nwant it to contain %s", i, got[i], w)
		}
	}
	if !strings.Contains(got[0], "set the provider's address to a Prometheus that scrapes those clients") {
		t.Errorf("no advice: %s", got[0])
	}
	// The rollout's canary is reached through the route it owns (the stable's).
	if got := warnings(t, doc(true, routed, "")); len(got) != 2 || strings.Contains(strings.Join(got, "\n"), `"errors"`) {
		t.Errorf("routed canary: %q", got)
	}
	if got := warnings(t, doc(false, xdsOnly, "")); len(got) != 0 {
		t.Errorf("without xDS: %q", got)
	}
	if got := warnings(t, doc(true, xdsOnly, "http://prometheus:9090")); len(got) != 2 {
		t.Errorf("with a Prometheus address, only the judge's: %q", got)
	}
}
