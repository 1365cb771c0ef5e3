package config

import (
	"strings"
	"testing"
)

// argoDoc is a valid configuration around one Rollout analysis and its templates: the
// rollout's analysis step is `analysis`, and templates follow.
func argoDoc(analysis, templates string) string {
	return `apiVersion: sluice.dev/v1alpha1
kind: Cluster
metadata: {name: stable}
spec: {endpoints: [{address: 127.0.0.1:9001}]}
---
apiVersion: sluice.dev/v1alpha1
kind: Cluster
metadata: {name: canary}
spec: {endpoints: [{address: 127.0.0.1:9002}]}
---
apiVersion: sluice.dev/v1alpha1
kind: Listener
metadata: {name: ing}
spec: {address: 127.0.0.1:8080, routes: [{cluster: stable}]}
---
apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata: {name: app}
spec:
  strategy:
    canary:
      stableService: stable
      canaryService: canary
      steps:
        - setWeight: 20
        - analysis:
` + analysis + `
---
` + templates
}

const webMetric = `      provider: {web: {url: "http://127.0.0.1:9/x"}}`

// TestArgoAnalysisValidation: what Argo refuses (utils/analysis ValidateMetric,
// GetDryRunMetrics, validation_references.go) Sluice refuses at load, with Argo's words;
// what Argo accepts and Sluice cannot run is an error naming the provider and what to use.
func TestArgoAnalysisValidation(t *testing.T) {
	tmpl := func(name, body string) string {
		return "apiVersion: argoproj.io/v1alpha1\nkind: AnalysisTemplate\nmetadata: {name: " + name + "}\nspec:\n" + body + "\n---\n"
	}
	ref := func(extra string) string { return "            templates: [{templateName: a}]\n" + extra }
	cases := []struct {
		name          string
		analysis, tpl string
		errs          []string // substrings, one per error, in order
		check         func(t *testing.T, src string)
	}{
		{name: "dryRun is an unanchored regular expression",
			analysis: ref("            dryRun: [{metricName: errors}]"),
			tpl:      tmpl("a", "  metrics:\n    - name: total-errors\n"+webMetric+"\n    - name: latency\n"+webMetric),
			check: func(t *testing.T, src string) {
				cfg, _ := LoadBytes("x.yaml", []byte(src))
				ms := cfg.Rollouts[0].Canary.Steps[1].Analysis.Metrics
				if !ms[0].DryRun || ms[1].DryRun {
					t.Fatalf("dry-run %v %v; want total-errors only", ms[0].DryRun, ms[1].DryRun)
				}
			}},
		{name: "dryRun rule matching no metric",
			analysis: ref("            dryRun: [{metricName: ^errors$}]"),
			tpl:      tmpl("a", "  metrics:\n    - name: total-errors\n"+webMetric),
			errs:     []string{`dryRun[0]: Rule didn't match any metric name(s)`}},
		{name: "a template's dryRun applies to every metric of the run",
			analysis: "            templates: [{templateName: a}, {templateName: b}]",
			tpl: tmpl("a", "  dryRun: [{metricName: from-b}]\n  metrics:\n    - name: from-a\n"+webMetric) +
				tmpl("b", "  metrics:\n    - name: from-b\n"+webMetric)},
		{name: "duplicate dryRun rules",
			analysis: ref("            dryRun: [{metricName: m}]"),
			tpl:      tmpl("a", "  dryRun: [{metricName: m}]\n  metrics:\n    - name: m\n"+webMetric),
			errs:     []string{`two Dry-Run metric rules have the same name 'm'`}},
		{name: "job provider",
			analysis: ref(""),
			tpl:      tmpl("a", "  metrics:\n    - name: smoke\n      provider: {job: {spec: {}}}"),
			errs:     []string{`metric "smoke" of template "a" uses provider job, which Sluice does not run`}},
		{name: "job provider, dry-run: informational, skipped",
			analysis: ref("            dryRun: [{metricName: smoke}]"),
			tpl:      tmpl("a", "  metrics:\n    - name: smoke\n      provider: {job: {spec: {}}}\n    - name: m\n"+webMetric),
			check: func(t *testing.T, src string) {
				cfg, ds := LoadBytes("x.yaml", []byte(src))
				if ms := cfg.Rollouts[0].Canary.Steps[1].Analysis.Metrics; len(ms) != 1 || ms[0].Name != "m" {
					t.Fatalf("metrics %+v", ms)
				}
				if !strings.Contains(ds.String(), "warning: metric \"smoke\": ignored: Sluice does not run provider job; it is dry-run") {
					t.Fatalf("no warning:\n%s", ds)
				}
			}},
		{name: "other plugin",
			analysis: ref(""),
			tpl:      tmpl("a", "  metrics:\n    - name: p\n      provider: {plugin: {argoproj-labs/sample-prometheus: {query: x}}}"),
			errs:     []string{`uses provider plugin argoproj-labs/sample-prometheus, which Sluice does not run`}},
		{name: "datadog says what to use instead",
			analysis: ref(""),
			tpl:      tmpl("a", "  metrics:\n    - name: dd\n      provider: {datadog: {query: x}}"),
			errs:     []string{`query the same data with provider.prometheus, or Datadog's HTTP API with provider.web, or make it informational with dryRun: [{metricName: dd}]`}},
		{name: "failureLimit -1 alone",
			analysis: ref(""),
			tpl:      tmpl("a", "  metrics:\n    - name: m\n      failureLimit: -1\n"+webMetric),
			errs:     []string{`failureLimit and consecutiveSuccessLimit cannot both be disabled`}},
		{name: "failureLimit -1 with consecutiveSuccessLimit",
			analysis: ref(""),
			tpl:      tmpl("a", "  metrics:\n    - name: m\n      interval: 10s\n      count: 5\n      failureLimit: -1\n      consecutiveSuccessLimit: 3\n"+webMetric),
			check: func(t *testing.T, src string) {
				cfg, _ := LoadBytes("x.yaml", []byte(src))
				if m := cfg.Rollouts[0].Canary.Steps[1].Analysis.Metrics[0]; m.ConsecutiveSuccessLimit != 3 || m.FailureLimit != -1 {
					t.Fatalf("%+v", m)
				}
			}},
		{name: "count below failureLimit + consecutiveSuccessLimit",
			analysis: ref(""),
			tpl:      tmpl("a", "  metrics:\n    - name: m\n      interval: 10s\n      count: 3\n      failureLimit: 2\n      consecutiveSuccessLimit: 2\n"+webMetric),
			errs:     []string{`count (3) must be >= failureLimit + consecutiveSuccessLimit (2 + 2) if both >= 0`}},
		{name: "inline metric that runs indefinitely",
			analysis: ref(""),
			tpl:      tmpl("a", "  metrics:\n    - name: m\n      interval: 10s\n"+webMetric),
			errs:     []string{`AnalysisTemplate a has metric m which runs indefinitely. Invalid value for count`}},
		{name: "nested templates (Argo v1.7)",
			analysis: ref(""),
			tpl: tmpl("a", "  templates: [{templateName: b}]\n  metrics:\n    - name: from-a\n"+webMetric) +
				tmpl("b", "  templates: [{templateName: c}]") +
				tmpl("c", "  metrics:\n    - name: from-c\n"+webMetric),
			check: func(t *testing.T, src string) {
				cfg, _ := LoadBytes("x.yaml", []byte(src))
				ms := cfg.Rollouts[0].Canary.Steps[1].Analysis.Metrics
				if len(ms) != 2 || ms[0].Name != "from-a" || ms[1].Name != "from-c" {
					t.Fatalf("metrics %+v", ms)
				}
			}},
		{name: "nested template cycle",
			analysis: ref(""),
			tpl: tmpl("a", "  templates: [{templateName: b}]\n  metrics:\n    - name: m\n"+webMetric) +
				tmpl("b", "  templates: [{templateName: a}]"),
			errs: []string{`including AnalysisTemplate "a" makes a cycle (a → b → a)`}},
		{name: "nested template missing",
			analysis: ref(""),
			tpl:      tmpl("a", "  templates: [{templateName: nope}]\n  metrics:\n    - name: m\n"+webMetric),
			errs:     []string{`spec.templates: "nope" names no AnalysisTemplate`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			src := argoDoc(c.analysis, c.tpl)
			cfg, ds := LoadBytes("x.yaml", []byte(src))
			errs := ds.Errors()
			if len(errs) != len(c.errs) {
				t.Fatalf("%d errors, want %d:\n%s", len(errs), len(c.errs), ds)
			}
			for i, want := range c.errs {
				if !strings.Contains(errs[i].Message, want) {
					t.Errorf("error %q lacks %q", errs[i], want)
				}
			}
			if len(c.errs) == 0 && cfg == nil {
				t.Fatalf("not loaded:\n%s", ds)
			}
			if c.check != nil {
				c.check(t, src)
			}
		})
	}
}
