package config

import (
	"strings"
	"testing"
	"time"
)

// progressDeadlineSeconds is how long a step waits for a healthy canary (default Argo's
// 600); progressDeadlineAbort is ignored with a warning that says Sluice always aborts.
func TestProgressDeadlineSeconds(t *testing.T) {
	withSpec := func(extra string) string {
		src := argoDoc("            templates: [{templateName: a}]",
			"apiVersion: argoproj.io/v1alpha1\nkind: AnalysisTemplate\nmetadata: {name: a}\nspec:\n  metrics:\n    - name: m\n"+webMetric+"\n")
		return strings.Replace(src, "spec:\n  strategy:", "spec:\n"+extra+"  strategy:", 1)
	}
	cfg, diags := LoadBytes("x.yaml", []byte(withSpec("")))
	if diags.HasErrors() || cfg.Rollouts[0].ProgressDeadline != 600*time.Second {
		t.Fatalf("default: %v %v", cfg, diags)
	}
	cfg, diags = LoadBytes("x.yaml", []byte(withSpec("  progressDeadlineSeconds: 45\n  progressDeadlineAbort: false\n")))
	if diags.HasErrors() || cfg.Rollouts[0].ProgressDeadline != 45*time.Second {
		t.Fatalf("45: %v", diags)
	}
	if !strings.Contains(diags.String(), "x.yaml:21: warning: spec.progressDeadlineAbort is ignored: Sluice always aborts a rollout whose step waited progressDeadlineSeconds") {
		t.Errorf("no warning for progressDeadlineAbort:\n%s", diags)
	}
	_, diags = LoadBytes("x.yaml", []byte(withSpec("  progressDeadlineSeconds: 0\n")))
	if !strings.Contains(diags.String(), "x.yaml:20: spec.progressDeadlineSeconds: 0 must be at least 1") {
		t.Errorf("0 accepted:\n%s", diags)
	}
}
