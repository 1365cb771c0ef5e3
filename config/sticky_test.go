package config

import (
	"strings"
	"testing"
)

// TestWarnsStickySessionsServedByXDS: with an xDS server, each Listener with
// stickySessions gets one warning, on its stickySessions line, whichever file order
// (the ControlPlane after the Listeners): Envoy and proxyless gRPC cannot verify the
// router's signed cookie and split every request. Without xDS there is no warning.
func TestWarnsStickySessionsServedByXDS(t *testing.T) {
	listener := func(name string, sticky bool) string {
		s := "---\napiVersion: sluice.dev/v1alpha1\nkind: Listener\nmetadata: {name: " + name + "}\nspec:\n" +
			"  address: 127.0.0.1:80" + name[len(name)-1:] + "\n  routes: [{hosts: [\"*\"], pathPrefix: /, cluster: a}]\n"
		if sticky {
			s += "  stickySessions:\n    maxAge: 1h\n"
		}
		return s
	}
	doc := func(xds bool) string {
		src := "apiVersion: sluice.dev/v1alpha1\nkind: Cluster\nmetadata: {name: a}\nspec: {endpoints: [{address: 127.0.0.1:9003}]}\n" +
			listener("web1", true) + listener("web2", false) + listener("web3", true) +
			"---\napiVersion: sluice.dev/v1alpha1\nkind: ControlPlane\nmetadata: {name: default}\nspec:\n  admin: {address: 127.0.0.1:9900}\n"
		if xds {
			src += "  xds: {address: 127.0.0.1:18000}\n"
		}
		return src
	}
	warnings := func(src string) []string {
		cfg, diags := LoadBytes("x.yaml", []byte(src))
		if cfg == nil || diags.HasErrors() {
			t.Fatalf("errors: %v", diags)
		}
		var out []string
		for _, d := range diags {
			if strings.Contains(d.Message, "sticky") {
				out = append(out, d.String())
			}
		}
		return out
	}
	got := warnings(doc(true))
	want := []string{
		"x.yaml:12: warning: spec.stickySessions: sticky sessions are honoured by Sluice's router only: Envoy and proxyless gRPC split every request",
		"x.yaml:28: warning: spec.stickySessions: sticky sessions are honoured by Sluice's router only: Envoy and proxyless gRPC split every request",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("with xDS:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if got := warnings(doc(false)); len(got) != 0 {
		t.Errorf("without xDS: %q", got)
	}
}
