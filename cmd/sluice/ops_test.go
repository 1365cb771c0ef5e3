package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-mesh/sluice/analyzer"
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

// TestDemoRedrawKeepsItsHeader: every redraw of the demo's screen starts with the header
// (config and log paths, addresses), so the first redraw does not hide it.
func TestDemoRedrawKeepsItsHeader(t *testing.T) {
	var out strings.Builder
	header := "Sluice demo — config /tmp/d/demo.yaml, log /tmp/d/sluice.log\n  router  http://127.0.0.1:1\n\n"
	v := &demoView{out: &out, tty: true, load: &loadGen{}, start: time.Now(), header: header}
	v.banner("Release 1")
	v.update(analyzer.RolloutStatus{Name: demoRollout, Phase: analyzer.PhaseProgressing, Steps: 8})
	v.lastDraw = time.Time{}
	v.update(analyzer.RolloutStatus{Name: demoRollout, Phase: analyzer.PhasePaused, Step: 1, Steps: 8, SetWeight: 20, ActualWeight: 20})
	screens := strings.Split(out.String(), "\x1b[H\x1b[2J")
	if len(screens) < 3 {
		t.Fatalf("%d redraws, want 2", len(screens)-1)
	}
	for i, s := range screens[1:] {
		if !strings.HasPrefix(s, header) || !strings.Contains(s, "Release 1") {
			t.Errorf("redraw %d does not start with the header:\n%s", i+1, s)
		}
	}
}

// TestDemoLoad: `sluice demo-load` sends at most --rps requests a second with the given
// headers, never more than --concurrency at once (a slow target makes it skip, not
// queue), stops after --duration, and its summary counts the answers by version.
func TestDemoLoad(t *testing.T) {
	var mu sync.Mutex
	var got, inFlight, maxInFlight int
	var marked int
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got++
		n := got
		inFlight++
		maxInFlight = max(maxInFlight, inFlight)
		if r.Header.Get("X-Internal-Test") == "true" && r.Host == "api.example" {
			marked++
		}
		mu.Unlock()
		defer func() { mu.Lock(); inFlight--; mu.Unlock() }()
		if r.URL.Path == "/slow" {
			time.Sleep(200 * time.Millisecond) // a slow service, well within the client's timeout
		}
		w.Header().Set("X-Sluice-Backend", map[bool]string{true: "stable", false: "canary"}[n%4 != 0])
		if n%10 == 0 {
			w.WriteHeader(http.StatusBadGateway)
		}
	}))
	defer srv.Close()

	start := time.Now()
	code, out, errs := runCLI("demo-load", "--url", srv.URL+"/", "--rps", "40", "--duration", "1500ms", "--every", "0",
		"--header", "x-internal-test: true", "--header", "Host: api.example")
	took := time.Since(start)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errs)
	}
	mu.Lock()
	n, m := got, marked
	mu.Unlock()
	t.Logf("%d requests in %s:\n%s", n, took, out)
	if n == 0 || float64(n) > 40*took.Seconds()+1 {
		t.Errorf("%d requests in %s at --rps 40", n, took)
	}
	if m != n {
		t.Errorf("%d of %d requests carried the headers", m, n)
	}
	var stable, canary, errors5xx int
	if _, err := fmt.Sscanf(out[strings.Index(out, "done after"):], "done after %s %d sent; answered by: %d canary, %d stable; %d errors",
		new(string), new(int), &canary, &stable, &errors5xx); err != nil {
		t.Fatalf("summary: %v\n%s", err, out)
	}
	if stable+canary != n || canary != n/4 || errors5xx != n/10 {
		t.Errorf("summary counts stable %d, canary %d, 5xx %d; the server answered %d (%d canary, %d errors)", stable, canary, errors5xx, n, n/4, n/10)
	}

	// A slow target: one request in flight, the other ticks skipped, not queued.
	mu.Lock()
	got, maxInFlight = 0, 0
	mu.Unlock()
	code, out, _ = runCLI("demo-load", "--url", srv.URL+"/slow", "--rps", "100", "--concurrency", "1", "--duration", "500ms", "--every", "0")
	mu.Lock()
	defer mu.Unlock()
	if code != exitOK || maxInFlight != 1 || !strings.Contains(out, "not sent (all 1 workers busy)") {
		t.Errorf("slow target: exit %d, %d at once, want 1:\n%s", code, maxInFlight, out)
	}

	for _, bad := range [][]string{{"--rps", "0"}, {"--concurrency", "0"}, {"--url", "ftp://x"}, {"--header", "novalue"}, {"extra"}} {
		if code, _, _ := runCLI(append([]string{"demo-load"}, bad...)...); code != exitUsage {
			t.Errorf("demo-load %v: exit %d, want %d", bad, code, exitUsage)
		}
	}
}
