package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzLoad feeds the loader arbitrary bytes: it must never panic, must say where
// every problem is, must be deterministic, and must return a model exactly when
// there is no error. `go test` runs the seed corpus (the example, every broken
// variant, the Argo examples and hostile snippets); `go test -fuzz=FuzzLoad
// ./config` explores from there.
func FuzzLoad(f *testing.F) {
	base, err := os.ReadFile("../examples/sluice.yaml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(base)
	for _, tc := range brokenCases {
		f.Add([]byte(strings.Replace(string(base), tc.old, tc.new, 1)))
	}
	argo, _ := filepath.Glob(filepath.Join("..", "..", "shared", "argo-examples", "*.yaml"))
	for _, p := range argo {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	for _, s := range []string{
		"", "---", "- a", "a: &a [*a]", "a: *a", "{", "[[[[", "kind: Rollout\napiVersion: argoproj.io/v1alpha1\nmetadata: {name: r}\nspec: {strategy: {canary: {steps: [{setWeight: 1e9}, {pause: {duration: 9999999999999h}}]}}}",
		"apiVersion: argoproj.io/v1alpha1\nkind: AnalysisTemplate\nmetadata: {name: t}\nspec: {metrics: [{name: m, successCondition: 'result[0] <', provider: {prometheus: {query: 'up{a=\"{{args.x}}\"}'}}}]}",
		"<<: {a: 1}\nkind: Cluster", "\xef\xbb\xbfkind: Cluster", "kind: !!binary aGVsbG8=",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, ds := LoadBytes("fuzz.yaml", data)
		if ds.HasErrors() != (cfg == nil) {
			t.Fatalf("HasErrors %v but config returned %v", ds.HasErrors(), cfg != nil)
		}
		for _, d := range ds {
			if d.File != "fuzz.yaml" || d.Line < 0 || d.Message == "" || strings.Contains(d.Message, "\n") && d.Code != CodeValue {
				t.Fatalf("bad diagnostic %#v", d)
			}
		}
		_, again := LoadBytes("fuzz.yaml", data)
		if again.String() != ds.String() {
			t.Fatalf("not deterministic:\n%s\nthen\n%s", ds, again)
		}
	})
}
