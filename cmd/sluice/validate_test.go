package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func runCmd(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestValidateExample(t *testing.T) {
	code, out, errs := runCmd("validate", "-f", "../../examples/sluice.yaml")
	if code != exitOK || out != "" {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errs)
	}
	if !strings.Contains(errs, "configuration is valid") || !strings.Contains(errs, `"rollouts": 1`) {
		t.Errorf("no summary on stderr: %q", errs)
	}
}

func TestValidateInvalid(t *testing.T) {
	ex, err := os.ReadFile("../../examples/sluice.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	src := strings.Replace(string(ex), "setWeight: 25", "setWeight: 250", 1)
	src = strings.Replace(src, "stableService: backend-api-stable", "stableService: nope", 1)
	src = strings.Replace(src, "spec:\n  strategy:", "spec:\n  replicas: 3\n  strategy:", 1)
	if err := os.WriteFile(bad, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errs := runCmd("validate", "--log-format", "json", "-f", dir)
	if code != exitInvalid {
		t.Fatalf("exit %d, want %d; stdout:\n%s", code, exitInvalid, out)
	}
	want := bad + ":65: warning: spec.replicas is ignored: Kubernetes-only: Sluice shifts traffic between Clusters and runs no pods\n" +
		bad + ":68: spec.strategy.canary.stableService: \"nope\" names no Cluster; define a sluice.dev/v1alpha1 Cluster \"nope\" with its endpoints, or fix the name\n" +
		bad + ":76: spec.strategy.canary.steps[2].setWeight: 250 is outside 0-100; use a percentage of traffic from 0 to 100\n"
	if out != want {
		t.Errorf("stdout:\n%s\nwant:\n%s", out, want)
	}
	var entry map[string]any
	if err := json.Unmarshal([]byte(strings.TrimSpace(errs)), &entry); err != nil {
		t.Fatalf("--log-format json: stderr is not one JSON line: %q", errs)
	}
	if entry["msg"] != "configuration is invalid" || entry["errors"] != float64(2) || entry["warnings"] != float64(1) {
		t.Errorf("summary: %v", entry)
	}
}

func TestValidateUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		out  string // substring of stdout+stderr
	}{
		{[]string{"validate"}, exitUsage, "no files"},
		{[]string{"validate", "--bogus"}, exitUsage, "flag provided but not defined"},
		{[]string{"validate", "--log-format", "xml", "-f", "x.yaml"}, exitUsage, "--log-format"},
		{[]string{"validate", "--help"}, exitOK, "sluice validate -f FILE|DIR"},
		{[]string{"validate", "-f", "does-not-exist.yaml"}, exitInvalid, "does-not-exist.yaml:0: cannot read: no such file or directory"},
		// Positional files work as well as -f; -f takes commas.
		{[]string{"validate", "../../examples/sluice.yaml"}, exitOK, "configuration is valid"},
		{[]string{"validate", "-f", "../../examples/sluice.yaml,../../examples/sluice.yaml"}, exitOK, "configuration is valid"},
		{[]string{"validate", "-f", "../../examples", "-f", "../../config/testdata/features.yaml"}, exitInvalid, `a second ControlPlane "main": one is already defined at ../../examples/sluice.yaml:7; keep one`},
	} {
		code, out, errs := runCmd(tc.args...)
		if code != tc.code || !strings.Contains(out+errs, tc.out) {
			t.Errorf("%v: exit %d (want %d), output %q (want %q in it)", tc.args, code, tc.code, out+errs, tc.out)
		}
	}
}
