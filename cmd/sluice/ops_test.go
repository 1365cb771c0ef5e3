package main

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// TestConfigStampsSeeEveryEditInsideADirectory: an in-place edit of a file inside a -f
// directory (new content, even of the same size, or a new size), a file added or removed
// changes the stamps; a file the loader does not read (hidden, not *.yaml/*.yml, a
// subdirectory) does not.
func TestConfigStampsSeeEveryEditInsideADirectory(t *testing.T) {
	dir := t.TempDir()
	single := filepath.Join(t.TempDir(), "single.yaml")
	put := func(p, s string, mod time.Time) {
		t.Helper()
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644) // in place
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteString(s); err != nil {
			t.Fatal(err)
		}
		f.Close()
		if !mod.IsZero() {
			if err := os.Chtimes(p, mod, mod); err != nil {
				t.Fatal(err)
			}
		}
	}
	t0 := time.Now().Add(-time.Hour).Truncate(time.Second)
	put(filepath.Join(dir, "a.yaml"), "kind: A\n", t0)
	put(filepath.Join(dir, "b.yml"), "kind: B\n", t0)
	put(single, "kind: S\n", t0)
	paths := []string{dir, single}
	stamps := stampConfig(paths)
	if got := keysOf(stamps); strings.Join(got, " ") != strings.Join([]string{dir, filepath.Join(dir, "a.yaml"), filepath.Join(dir, "b.yml"), single}, " ") {
		t.Fatalf("stamped %v", got)
	}
	unchanged := func(what string) {
		t.Helper()
		if !stampConfig(paths).equal(stamps) {
			t.Errorf("%s: stamps changed, want unchanged", what)
		}
	}
	changed := func(what string) {
		t.Helper()
		next := stampConfig(paths)
		if next.equal(stamps) {
			t.Errorf("%s: stamps unchanged, want a reload", what)
		}
		stamps = next
	}
	unchanged("nothing done")
	put(filepath.Join(dir, ".hidden.yaml"), "x", time.Time{})
	put(filepath.Join(dir, "notes.txt"), "x", time.Time{})
	if err := os.Mkdir(filepath.Join(dir, "sub.yaml"), 0o755); err != nil {
		t.Fatal(err)
	}
	unchanged("a hidden file, a .txt file and a subdirectory added")

	put(filepath.Join(dir, "a.yaml"), "kind: Z\n", t0.Add(time.Second)) // same size, later
	changed("a.yaml edited in place, same size")
	put(filepath.Join(dir, "a.yaml"), "kind: Zed\n", t0.Add(time.Second)) // same time, new size
	changed("a.yaml edited in place, new size, same modification time")
	put(filepath.Join(dir, "c.yaml"), "kind: C\n", time.Time{})
	changed("c.yaml added")
	if err := os.Remove(filepath.Join(dir, "b.yml")); err != nil {
		t.Fatal(err)
	}
	changed("b.yml removed")
	put(single, "kind: T\n", t0.Add(2*time.Second))
	changed("the single file edited")
	if err := os.Remove(single); err != nil {
		t.Fatal(err)
	}
	changed("the single file removed")
	put(single, "kind: T\n", t0.Add(2*time.Second))
	changed("the single file back")
}

func keysOf(m configStamps) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// TestHelpCommand: `sluice help CMD` and `sluice CMD --help` print that command's help
// (not the general one), on stdout, with exit 0; an unknown command is a usage error.
func TestHelpCommand(t *testing.T) {
	for name, c := range commands {
		code, out, errs := runCLI("help", name)
		if code != exitOK || !strings.Contains(out, "sluice "+name+" ") || !strings.HasPrefix(out, c.summary) ||
			strings.Contains(out, "Commands:") {
			t.Errorf("sluice help %s: exit %d, stdout %q, stderr %q", name, code, out, errs)
		}
		code, out2, _ := runCLI(name, "--help")
		if code != exitOK || out2 != out {
			t.Errorf("sluice %s --help: exit %d, %q; want the same as sluice help %s", name, code, out2, name)
		}
	}
	if code, out, _ := runCLI("help"); code != exitOK || !strings.Contains(out, "Commands:") {
		t.Errorf("sluice help: exit %d, %q", code, out)
	}
	if code, _, errs := runCLI("help", "nonsense"); code != exitUsage || !strings.Contains(errs, `unknown command "nonsense"`) {
		t.Errorf("sluice help nonsense: exit %d, %q", code, errs)
	}
}

// TestFileFlagKeepsAnExistingPathWithACommaWhole: -f a,b means two files, unless "a,b" is
// itself a file or directory.
func TestFileFlagKeepsAnExistingPathWithACommaWhole(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "with,comma")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	var s stringList
	_ = s.Set(dir)
	_ = s.Set("x.yaml, y.yaml")
	if strings.Join(s, "|") != dir+"|x.yaml|y.yaml" {
		t.Fatalf("got %q", s)
	}
}
