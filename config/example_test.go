package config

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sluice-mesh/sluice/internal/testenv"
	"github.com/sluice-mesh/sluice/model"
)

func TestExampleConfig(t *testing.T) {
	cfg, ds := Load("../examples/sluice.yaml")
	if len(ds) != 0 {
		t.Fatalf("diagnostics for the example:\n%s", ds)
	}
	if cfg == nil {
		t.Fatal("no config")
	}
	if got, want := cfg.ControlPlane.Admin.Address, "127.0.0.1:9900"; got != want {
		t.Errorf("admin address %q, want %q", got, want)
	}
	if len(cfg.Clusters) != 2 || cfg.Clusters[0].Name != "backend-api-canary" || cfg.Clusters[1].Name != "backend-api-stable" {
		t.Fatalf("clusters not sorted or missing: %+v", cfg.Clusters)
	}
	st := cfg.Cluster("backend-api-stable")
	want := model.Cluster{
		Name:                  "backend-api-stable",
		Endpoints:             []model.Endpoint{{Address: "127.0.0.1:9001", Weight: 1}},
		Protocol:              model.ProtocolHTTP1,
		HealthCheck:           &model.HealthCheck{Path: "/healthz", Interval: 5 * time.Second, Timeout: time.Second, HealthyThreshold: 2, UnhealthyThreshold: 3},
		Warmup:                10 * time.Second,
		ConnectTimeout:        time.Second,
		ResponseHeaderTimeout: time.Minute,
		Outlier:               model.OutlierDetection{ConsecutiveFailures: 5, BaseEjectionTime: 30 * time.Second},
		Pos:                   model.Pos{File: "../examples/sluice.yaml", Line: 17},
	}
	if d := cmp.Diff(want, *st); d != "" {
		t.Errorf("stable cluster (-want +got):\n%s", d)
	}
	ln := cfg.Listener("backend-api-ingress")
	if ln == nil || ln.Address != "127.0.0.1:8080" || ln.InternalTraffic == nil || ln.StickySessions == nil ||
		len(ln.Routes) != 1 || ln.Routes[0].Cluster != "backend-api-stable" || ln.Routes[0].Name != "api" {
		t.Fatalf("listener: %+v", ln)
	}
	r := cfg.Rollout("backend-api")
	if r == nil || r.Strategy != model.StrategyCanary || r.Revision != "v2" {
		t.Fatalf("rollout: %+v", r)
	}
	c := r.Canary
	if c.StableService != "backend-api-stable" || c.CanaryService != "backend-api-canary" || c.StableIngress != "backend-api-ingress" {
		t.Errorf("canary services: %+v", c)
	}
	var kinds []string
	for _, s := range c.Steps {
		switch {
		case s.SetWeight != nil:
			kinds = append(kinds, "w"+strconv.Itoa(*s.SetWeight))
		case s.Pause != nil:
			kinds = append(kinds, "p"+s.Pause.Duration.String())
		case s.Analysis != nil:
			kinds = append(kinds, "a")
		}
	}
	if got := strings.Join(kinds, " "); got != "w10 p1m0s w25 p1m0s a w50 p2m0s" {
		t.Errorf("steps = %s", got)
	}
	a := c.Steps[4].Analysis
	if len(a.Metrics) != 2 {
		t.Fatalf("analysis metrics: %+v", a.Metrics)
	}
	m := a.Metrics[0]
	if m.Name != "error-rate" || m.Count != 2 || m.Interval != 30*time.Second || m.ConsecutiveErrorLimit != 4 ||
		m.SuccessCondition != "result[0] <= 0.01" || m.Provider.Prometheus == nil {
		t.Errorf("metric: %+v", m)
	}
	p := m.Provider.Prometheus
	if p.Address != "" {
		t.Errorf("address %q, want empty (embedded)", p.Address)
	}
	if !strings.Contains(p.Query, `cluster="backend-api-canary",status_code=~"5.."`) || strings.Contains(p.Query, "{{") {
		t.Errorf("query not substituted: %s", p.Query)
	}
	// The template itself keeps its placeholders.
	if q := cfg.Templates[0].Metrics[0].Provider.Prometheus.Query; !strings.Contains(q, "{{args.canary-cluster}}") {
		t.Errorf("template query lost its placeholder: %s", q)
	}
}

// argoExamplesDir finds the folder of Argo manifests written by others: $SLUICE_ARGO_EXAMPLES,
// else shared/argo-examples in the module root or any directory above it (a worktree or a
// clone may sit deeper than ../). It returns "" and the places tried when there is none.
func argoExamplesDir() (string, string) {
	if d := os.Getenv("SLUICE_ARGO_EXAMPLES"); d != "" {
		return d, ""
	}
	root, err := testenv.ModuleRoot()
	if err != nil {
		return "", err.Error()
	}
	var tried []string
	for dir := root; ; dir = filepath.Dir(dir) {
		cand := filepath.Join(dir, "shared", "argo-examples")
		if fi, err := os.Stat(cand); err == nil && fi.IsDir() {
			return cand, ""
		}
		tried = append(tried, cand)
		if filepath.Dir(dir) == dir {
			return "", strings.Join(tried, ", ")
		}
	}
}

// TestArgoExamples loads every Rollout and AnalysisTemplate someone else wrote
// (shared/argo-examples, taken unchanged from Argo Rollouts' examples/ and test/e2e/), as
// `sluice validate` does: none may fail to parse, and every error must be about a
// Kubernetes-only concept — a Service that no Cluster stands in for, Argo's
// replica-count canary (no services), a Kubernetes Job provider — or the one template
// the folder itself lacks (always-pass). Each expected error is listed exactly.
func TestArgoExamples(t *testing.T) {
	dir, tried := argoExamplesDir()
	if dir == "" {
		testenv.Missing(t, "no Argo example manifests: tried "+tried+"; put them in a shared/argo-examples folder above the repository, or set SLUICE_ARGO_EXAMPLES=DIR")
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if len(files) < 10 {
		t.Fatalf("only %d example files", len(files))
	}
	noServices := []string{
		"spec.strategy.canary.stableService is required: name the Cluster that serves the stable version (Sluice shifts traffic between two Clusters)",
		"spec.strategy.canary.canaryService is required: name the Cluster that serves the canary version (Sluice shifts traffic between two Clusters)",
	}
	unresolved := func(field, name string) string {
		return field + ": " + `"` + name + `" names no Cluster; define a sluice.dev/v1alpha1 Cluster "` + name + `" with its endpoints, or fix the name`
	}
	canary := func(prefix string) []string {
		return []string{unresolved("spec.strategy.canary.canaryService", prefix+"-canary"), unresolved("spec.strategy.canary.stableService", prefix+"-stable")}
	}
	want := map[string][]string{
		"analysis-templates.yaml":                                      nil,
		"functional-analysistemplate-web-background.yaml":              nil,
		"functional-analysistemplate-web-background-inconclusive.yaml": nil,
		"apisix-rollout.yaml":                                          canary("rollout-apisix-canary"),
		"apisix-rollout-apisix-canary-set-header.yaml":                 canary("rollout-apisix-canary"),
		"istio-istio-mirror.yaml":                                      canary("istio-host-split"),
		"notifications-rollout-canary.yaml":                            noServices,
		"rollout-analysis-step.yaml": append(append([]string{}, noServices...),
			`spec.strategy.canary.steps[1].analysis.templates[1].templateName: "always-pass" names no ClusterAnalysisTemplate; define it, or fix the name`),
		"rollout-background-analysis.yaml": append(append([]string{}, noServices...),
			`spec.strategy.canary.analysis: metric "random-fail" of template "random-fail" uses provider job, which Sluice does not run, so this analysis could never measure it; it runs a Kubernetes Job, and Sluice runs no pods: serve the check's result over HTTP and use provider.web, or make it informational with dryRun: [{metricName: random-fail}]`),
		"rollout-baseline-vs-canary.yaml": noServices,
		"rollout-bluegreen.yaml": {
			unresolved("spec.strategy.blueGreen.activeService", "rollout-bluegreen-active"),
			unresolved("spec.strategy.blueGreen.previewService", "rollout-bluegreen-preview"),
		},
		"rollout-canary.yaml":          noServices,
		"rollout-experiment-step.yaml": noServices,
		"rollout-template-ref.yaml":    noServices,
		"traffic-management-rollout-linkerd.yaml": {
			unresolved("spec.strategy.canary.stableService", "rollout-linkerd-stable"),
			unresolved("spec.strategy.canary.canaryService", "rollout-linkerd-canary"),
		},
	}
	templates := filepath.Join(dir, "analysis-templates.yaml")
	for _, f := range files {
		base := filepath.Base(f)
		t.Run(base, func(t *testing.T) {
			exp, ok := want[base]
			if !ok {
				t.Fatalf("new example file %s: add its expected errors to this test", base)
			}
			paths := []string{f}
			if f != templates {
				paths = append(paths, templates) // the examples' prerequisite
			}
			cfg, ds := load(paths...)
			var got []string
			for _, d := range ds.Errors() {
				if d.Code == CodeSyntax || (d.Code == CodeSchema && !strings.Contains(d.Message, "Service is required")) {
					t.Errorf("parse error: %s", d)
				}
				kubernetesOnly := strings.Contains(d.Message, "names no Cluster") || strings.Contains(d.Message, "Service is required") ||
					(d.Code == CodeUnsupported && strings.Contains(d.Message, "provider job"))
				if !kubernetesOnly && !strings.Contains(d.Message, `"always-pass" names no`) {
					t.Errorf("an error not about a Kubernetes-only concept: %s", d)
				}
				got = append(got, d.Message)
			}
			if d := cmp.Diff(exp, got); d != "" {
				t.Errorf("errors (-want +got):\n%s\nall diagnostics:\n%s", d, ds)
			}
			if len(cfg.Rollouts)+len(cfg.Templates) == 0 {
				t.Errorf("nothing loaded")
			}
			for _, d := range ds.Warnings() {
				if d.Code != CodeIgnored && d.Code != CodeSuspicious {
					t.Errorf("warning with code %q: %s", d.Code, d)
				}
			}
		})
	}
}
