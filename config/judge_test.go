package config

import (
	"strings"
	"testing"

	"github.com/sluice-mesh/sluice/model"
)

// TestJudgeWander: the judge's wander is read from the plugin's fields (default 0), and a
// value outside 0–3 is refused with the field's path and the range.
func TestJudgeWander(t *testing.T) {
	load := func(fields string) (*model.JudgeProvider, Diagnostics) {
		tpl := "apiVersion: argoproj.io/v1alpha1\nkind: AnalysisTemplate\nmetadata: {name: a}\nspec:\n  metrics:\n" +
			"    - name: judged\n      provider: {plugin: {sluice/judge: {signal: errors" + fields + "}}}\n"
		cfg, diags := LoadBytes("x.yaml", []byte(argoDoc("            templates: [{templateName: a}]", tpl)))
		if cfg == nil || len(cfg.Templates) != 1 || len(cfg.Templates[0].Metrics) != 1 {
			return nil, diags
		}
		return cfg.Templates[0].Metrics[0].Provider.Judge, diags
	}
	j, diags := load("")
	if diags.HasErrors() || j == nil || j.Wander != 0 {
		t.Fatalf("default: %+v %v", j, diags.Errors())
	}
	j, diags = load(", wander: 0.5")
	if diags.HasErrors() || j == nil || j.Wander != 0.5 {
		t.Fatalf("wander 0.5: %+v %v", j, diags.Errors())
	}
	for _, bad := range []string{"-0.1", "4"} {
		_, diags = load(", wander: " + bad)
		errs := diags.Errors()
		if len(errs) != 1 || !strings.Contains(errs[0].String(), "sluice/judge.wander") || !strings.Contains(errs[0].String(), "0 to 3") ||
			!strings.HasPrefix(errs[0].String(), "x.yaml:") {
			t.Errorf("wander %s: %v", bad, errs)
		}
	}
}
