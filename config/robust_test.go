package config

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// one returns the only diagnostic, failing otherwise.
func one(t *testing.T, ds Diagnostics) Diagnostic {
	t.Helper()
	if len(ds) != 1 {
		t.Fatalf("want one diagnostic, got %d:\n%s", len(ds), ds)
	}
	return ds[0]
}

func TestHostileInput(t *testing.T) {
	bomb := "apiVersion: argoproj.io/v1alpha1\nkind: Rollout\nmetadata: {name: r}\nspec:\n  template:\n    a: &a [x, x, x, x, x, x, x, x, x, x]\n"
	prev := "a"
	for _, n := range []string{"b", "c", "d", "e", "f", "g", "h", "i"} {
		bomb += "    " + n + ": &" + n + " [" + strings.TrimSuffix(strings.Repeat("*"+prev+", ", 10), ", ") + "]\n"
		prev = n
	}
	var block strings.Builder
	for i := 0; i < 500; i++ {
		block.WriteString(strings.Repeat("  ", i) + "a:\n")
	}
	for _, tc := range []struct {
		name, data, want string
	}{
		{"empty", "", "x.yaml:1: file is empty: want YAML documents (apiVersion, kind, metadata, spec)"},
		{"blank", "  \n\n\t\n", "x.yaml:1: file is empty: want YAML documents (apiVersion, kind, metadata, spec)"},
		{"only comments", "# nothing\n---\n# here\n", "x.yaml:1: file holds no YAML documents"},
		{"binary", "apiVersion: v1\n\x00\x01\x02\xff", "x.yaml:2: not a YAML text file: binary data at byte 15"},
		{"invalid utf-8", "kind: \xc3\x28", "x.yaml:1: not a YAML text file: binary data at byte 6"},
		{"malformed", "kind: Cluster\nmetadata: {name: [}\n", "x.yaml:2: invalid YAML: did not find expected node content"},
		{"unclosed list", "a: 1\nb:\n  - x\n  y: 2\n", "x.yaml:3: invalid YAML: did not find expected '-' indicator"},
		{"unknown anchor", "kind: Cluster\nspec:\n  x: *nope\n", "x.yaml:3: invalid YAML: unknown anchor 'nope' referenced; define it with &nope before using it"},
		{"scalar document", "just text", "x.yaml:1: document: want a mapping, got the string \"just text\""},
		{"list document", "- a\n- b\n", "x.yaml:1: document: want a mapping, got a list"},
		{"deep flow nesting", strings.Repeat("[", 100000), "x.yaml:1: document nests more than 100 levels deep; configuration never does"},
		{"deep block nesting", block.String(), "x.yaml:402: document nests more than 100 levels deep; configuration never does"},
		{"many entries", "a: [" + strings.Repeat("a,", 300000) + "a]", "x.yaml:1: file has about 300000 entries (lines and list items); the limit is 200000: split it"},
		{"many lines", strings.Repeat("- a\n", 250000), "x.yaml:1: file has about 250000 entries (lines and list items); the limit is 200000: split it"},
		{"alias bomb", bomb, "x.yaml:6: document is too complex: its aliases expand to too many nodes; write it out plainly"},
		{"no kind", "apiVersion: v1\nmetadata: {name: x}\n", "x.yaml:1: kind is required: Rollout, AnalysisTemplate, ClusterAnalysisTemplate, Cluster, Listener or ControlPlane"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, ds := LoadBytes("x.yaml", []byte(tc.data))
			var got []string
			for _, d := range ds.Errors() {
				got = append(got, d.String())
			}
			found := false
			for _, g := range got {
				found = found || g == tc.want
			}
			if !found {
				t.Errorf("got\n%s\nwant among the errors\n%s", strings.Join(got, "\n"), tc.want)
			}
			if cfg != nil {
				t.Error("a config came back with errors")
			}
		})
	}
}

func TestIgnoredKindsNeverFail(t *testing.T) {
	src := "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {name: r}\nrules: [{verbs: [get]}]\n---\n" +
		"apiVersion: v1\nkind: List\nitems: [{a: 1}]\n---\n" +
		"apiVersion: v1\nkind: List\nitems: []\n"
	cfg, ds := LoadBytes("k.yaml", []byte(src))
	want := "k.yaml:2: warning: kind Role (rbac.authorization.k8s.io/v1) is ignored: Sluice reads only Argo Rollouts and sluice.dev kinds\n" +
		"k.yaml:7: warning: kind List (v1) is ignored: Sluice reads only Argo Rollouts and sluice.dev kinds\n"
	if cfg == nil || ds.String() != want {
		t.Errorf("got\n%swant\n%s", ds, want)
	}
}

func TestLargeFileIsRefusedUnread(t *testing.T) {
	p := filepath.Join(t.TempDir(), "big.yaml")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	// 50 MB, sparse: refusing it must not read it.
	if err := f.Truncate(50 << 20); err != nil {
		t.Fatal(err)
	}
	f.Close()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, ds := Load(p)
	runtime.ReadMemStats(&after)
	d := one(t, ds)
	if want := p + ":0: file is 52428800 bytes; the limit is 10485760 (10 MiB): split it or remove what is not configuration"; d.String() != want {
		t.Errorf("got %s\nwant %s", d, want)
	}
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 1<<20 {
		t.Errorf("refusing a 50 MB file allocated %d bytes", grew)
	}
	// In memory too.
	_, ds = LoadBytes("big.yaml", make([]byte, MaxFileSize+1))
	if d := one(t, ds); !strings.Contains(d.Message, "the limit is 10485760") {
		t.Errorf("LoadBytes: %s", d)
	}
}

func TestDirectoriesAndSeveralFiles(t *testing.T) {
	ex, err := os.ReadFile("../examples/sluice.yaml")
	if err != nil {
		t.Fatal(err)
	}
	docs := strings.Split(string(ex), "\n---\n")
	dir := t.TempDir()
	// Split the example over files; a directory read is the same configuration.
	for i, d := range docs {
		name := filepath.Join(dir, string(rune('a'+i))+".yaml")
		if err := os.WriteFile(name, []byte(d), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("not yaml"), 0o644)
	os.WriteFile(filepath.Join(dir, ".hidden.yaml"), []byte("\x00"), 0o644)
	cfg, ds := Load(dir)
	if len(ds) != 0 || cfg == nil {
		t.Fatalf("directory: %v\n%s", cfg != nil, ds)
	}
	if len(cfg.Clusters) != 2 || len(cfg.Rollouts) != 1 || len(cfg.Rollout("backend-api").Canary.Steps[4].Analysis.Metrics) != 2 {
		t.Errorf("directory config incomplete: %+v", cfg)
	}
	// A file named twice is read once.
	if _, ds = Load(dir, filepath.Join(dir, "b.yaml"), dir+"/./b.yaml"); len(ds) != 0 {
		t.Errorf("a file named twice:\n%s", ds)
	}
	// A copy of a file: every name in it is a duplicate.
	b, _ := os.ReadFile(filepath.Join(dir, "b.yaml"))
	other := filepath.Join(t.TempDir(), "copy.yaml")
	os.WriteFile(other, b, 0o644)
	_, ds = Load(dir, other)
	if len(ds.Errors()) != 1 || ds[0].String() != other+`:4: Cluster "backend-api-stable" is already defined at `+filepath.Join(dir, "b.yaml")+":4; rename one of them" {
		t.Errorf("duplicate across files:\n%s", ds)
	}
	_, ds = Load(filepath.Join(dir, "missing.yaml"))
	if d := one(t, ds); d.String() != filepath.Join(dir, "missing.yaml")+":0: cannot read: no such file or directory" {
		t.Errorf("missing file: %s", d)
	}
	empty := t.TempDir()
	_, ds = Load(empty)
	if d := one(t, ds); d.String() != empty+":0: directory holds no .yaml or .yml files" {
		t.Errorf("empty dir: %s", d)
	}
}

// TestOddShapesGolden checks the whole report for a file of odd shapes (empty steps,
// wrong kinds of node, two providers, bad header names, ...). UPDATE_GOLDEN=1 rewrites it.
func TestOddShapesGolden(t *testing.T) {
	_, ds := Load("testdata/odd.yaml")
	got := ds.String()
	if os.Getenv("UPDATE_GOLDEN") != "" {
		os.WriteFile("testdata/odd.golden", []byte(got), 0o644)
	}
	want, err := os.ReadFile("testdata/odd.golden")
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Errorf("report differs from testdata/odd.golden:\n%s", got)
	}
}
