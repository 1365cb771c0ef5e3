// Package opse2e holds the end-to-end tests of operating `sluice serve` (issue 11) with
// the real binary, built once in TestMain: bind first, then decide (a taken listener,
// admin or xDS port stops the process at once, names the address and the cause, and
// writes no rollout state); one owner per stateDir; a file edited in place inside a
// `-f DIR` directory reloads. The stable and canary versions are real HTTP servers in the
// test process; the test drives and reads Sluice only through its admin API, its exit
// code and its output.
package opse2e

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sluice-mesh/sluice/analyzer"
	"github.com/sluice-mesh/sluice/internal/statedir"
	"github.com/sluice-mesh/sluice/internal/testenv"
)

// sluiceBin is the sluice binary built by TestMain.
var sluiceBin string

func TestMain(m *testing.M) { os.Exit(testenv.RunWithSluice(m, &sluiceBin)) }

// addrs are the addresses one `sluice serve` is configured with.
type addrs struct {
	admin, listen, xds string // xds "": no xDS server
	stable, canary     string
	stateDir           string
}

// baseYAML is the Clusters, the Listener and the ControlPlane.
func baseYAML(a addrs) string {
	xds := ""
	if a.xds != "" {
		xds = "  xds: {address: " + a.xds + "}\n"
	}
	return `apiVersion: sluice.dev/v1alpha1
kind: Cluster
metadata: {name: web-a}
spec:
  endpoints: [{address: ` + a.stable + `}]
  healthCheck: {path: /health, interval: 1s}
---
apiVersion: sluice.dev/v1alpha1
kind: Cluster
metadata: {name: web-b}
spec:
  endpoints: [{address: ` + a.canary + `}]
  healthCheck: {path: /health, interval: 1s}
---
apiVersion: sluice.dev/v1alpha1
kind: Listener
metadata: {name: web-ingress}
spec:
  address: ` + a.listen + `
  routes: [{hosts: ["*"], pathPrefix: /, cluster: web-a}]
---
apiVersion: sluice.dev/v1alpha1
kind: ControlPlane
metadata: {name: default}
spec:
  admin: {address: ` + a.admin + `}
` + xds + `  stateDir: ` + a.stateDir + `
`
}

// rolloutYAML is a Rollout that sets 30% and waits for a person.
func rolloutYAML(revision string) string {
	return `apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata:
  name: web
  annotations: {sluice.dev/revision: "` + revision + `"}
spec:
  strategy:
    canary:
      stableService: web-a
      canaryService: web-b
      steps:
      - setWeight: 30
      - pause: {}
`
}

// writeConfigDir writes base.yaml and rollout.yaml into a new directory.
func writeConfigDir(t *testing.T, a addrs, revision string) string {
	t.Helper()
	dir := t.TempDir()
	write(t, filepath.Join(dir, "base.yaml"), baseYAML(a))
	write(t, filepath.Join(dir, "rollout.yaml"), rolloutYAML(revision))
	return dir
}

// write replaces the content of path in place: same inode, as an editor that saves in
// place (or `echo >`) does.
func write(t *testing.T, path, text string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(text); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func inode(t *testing.T, path string) uint64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

// backend is a real HTTP server standing in for one version of the service.
func backend(t *testing.T, name string) string {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Backend", name)
		fmt.Fprintln(w, name)
	}))
	t.Cleanup(s.Close)
	return s.Listener.Addr().String()
}

// stateFiles returns the content of every file in dir but the lock file (whose pid
// line a refused or failed start may write and empty again), by name.
func stateFiles(t *testing.T, dir string) map[string]string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, e := range ents {
		if e.Name() == statedir.LockFile {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out[e.Name()] = string(b)
	}
	return out
}

func status(admin string) (analyzer.RolloutStatus, bool) {
	var st analyzer.RolloutStatus
	resp, err := http.Get("http://" + admin + "/api/v1/rollouts/web")
	if err != nil {
		return st, false
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&st) != nil {
		return st, false
	}
	return st, true
}

// serve starts `sluice serve -f path` with JSON logs.
func serve(t *testing.T, name, path string) *testenv.Process {
	t.Helper()
	return testenv.StartProcess(t, name, sluiceBin, "serve", "-f", path, "--log-format", "json")
}

// waitPaused30 waits until the rollout pauses at 30% (applied) with revision rev.
func waitPaused30(t *testing.T, p *testenv.Process, admin, rev string) analyzer.RolloutStatus {
	t.Helper()
	var st analyzer.RolloutStatus
	testenv.WaitFor(t, 60*time.Second, "rollout web paused at 30% with revision "+rev, func() bool {
		if p.Exited() {
			t.Fatalf("%s exited:\n%s", p.Name, p.Output())
		}
		var ok bool
		st, ok = status(admin)
		return ok && st.Revision == rev && st.Phase == analyzer.PhasePaused && st.ActualWeight == 30
	})
	return st
}

// exitOf waits (generously: the machine is loaded) for p to end and returns its exit
// code and how long it ran.
func exitOf(t *testing.T, p *testenv.Process, started time.Time) (int, time.Duration) {
	t.Helper()
	select {
	case <-p.Done():
	case <-time.After(60 * time.Second):
		t.Fatalf("%s still running after 60 s; it must stop at once:\n%s", p.Name, tail(p.Output()))
	}
	return p.Cmd.ProcessState.ExitCode(), time.Since(started)
}

func tail(s string) string {
	if len(s) > 4000 {
		return "…" + s[len(s)-4000:]
	}
	return s
}

func lines(s string) int { return strings.Count(strings.TrimRight(s, "\n"), "\n") + 1 }

// TestOperatingServe runs one `sluice serve` (A) and tries, around it, what an operator
// does by mistake or on purpose: a second serve on A's stateDir, edits inside its -f DIR,
// and — once A has stopped, on A's stateDir — starts whose ports are taken. Then A's
// configuration starts again and resumes exactly where A left off.
func TestOperatingServe(t *testing.T) {
	stateDir := filepath.Join(t.TempDir(), "state")
	base := addrs{admin: testenv.FreeAddr(t), listen: testenv.FreeAddr(t),
		stable: backend(t, "a"), canary: backend(t, "b"), stateDir: stateDir}
	cfgDir := writeConfigDir(t, base, "r1")
	a := serve(t, "sluice serve A", cfgDir)
	waitPaused30(t, a, base.admin, "r1")
	pidA := a.Cmd.Process.Pid

	t.Run("second serve on the same stateDir", func(t *testing.T) {
		before := stateFiles(t, stateDir)
		if len(before) == 0 {
			t.Fatal("A wrote no rollout state")
		}
		// Other ports: the stateDir is the only thing the two share.
		other := base
		other.admin, other.listen = testenv.FreeAddr(t), testenv.FreeAddr(t)
		start := time.Now()
		b := serve(t, "sluice serve B", writeConfigDir(t, other, "r1"))
		code, took := exitOf(t, b, start)
		out := b.Output()
		t.Logf("second serve: exit %d after %s, %d lines:\n%s", code, took.Round(time.Millisecond), lines(out), out)
		want := fmt.Sprintf("stateDir %s is in use by pid %d", stateDir, pidA)
		if code == 0 || !strings.Contains(out, want) {
			t.Fatalf("exit %d, output lacks %q", code, want)
		}
		if n := lines(out); n >= 100 {
			t.Errorf("%d log lines, want fewer than 100", n)
		}
		if after := stateFiles(t, stateDir); !equalMaps(before, after) {
			t.Errorf("the refused serve changed the state:\nbefore %v\nafter  %v", before, after)
		}
		for _, addr := range []string{other.admin, other.listen} {
			if c, err := net.Dial("tcp", addr); err == nil {
				c.Close()
				t.Errorf("%s still bound by the refused serve", addr)
			}
		}
		if st, ok := status(base.admin); !ok || st.Phase != analyzer.PhasePaused || st.ActualWeight != 30 || st.Aborted {
			t.Errorf("A after the refused serve: %+v (ok %v), want still Paused at 30%%", st, ok)
		}
	})

	t.Run("in-place edits inside -f DIR reload", func(t *testing.T) {
		reloads := func() int { return strings.Count(a.Output(), `"configuration reloaded"`) }
		waitReloads := func(what string, n int) {
			t.Helper()
			testenv.WaitFor(t, 30*time.Second, what+" reloaded", func() bool { return reloads() >= n })
		}
		rolloutFile := filepath.Join(cfgDir, "rollout.yaml")
		ino := inode(t, rolloutFile)
		n := reloads()
		write(t, rolloutFile, rolloutYAML("r2")) // same inode, new content: a new release
		if inode(t, rolloutFile) != ino {
			t.Fatal("the edit was not in place")
		}
		waitReloads("the edited rollout.yaml", n+1)
		waitPaused30(t, a, base.admin, "r2")

		// A file added to the directory, then removed: both reload.
		extra := filepath.Join(cfgDir, "extra.yaml")
		write(t, extra, "apiVersion: sluice.dev/v1alpha1\nkind: Cluster\nmetadata: {name: web-c}\nspec:\n  endpoints: [{address: "+base.stable+"}]\n")
		waitReloads("the added extra.yaml", n+2)
		if err := os.Remove(extra); err != nil {
			t.Fatal(err)
		}
		waitReloads("the removed extra.yaml", n+3)
		if st, _ := status(base.admin); st.Revision != "r2" || st.Phase != analyzer.PhasePaused {
			t.Errorf("after the reloads: %+v", st)
		}
	})

	// A stops; its state stays in stateDir.
	if err := a.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code, _ := exitOf(t, a, time.Now()); code != 0 {
		t.Fatalf("A exited %d after SIGTERM", code)
	}
	saved := stateFiles(t, stateDir)

	for _, tc := range []struct {
		name     string
		freshDir bool // a new stateDir (no rollout state may be created) instead of A's
		take     func(a *addrs, taken string)
		what     string
	}{
		{name: "taken listener port", take: func(a *addrs, taken string) { a.listen = taken }, what: "listener web-ingress"},
		{name: "taken listener port with a fresh stateDir", freshDir: true, take: func(a *addrs, taken string) { a.listen = taken }, what: "listener web-ingress"},
		{name: "taken admin port", take: func(a *addrs, taken string) { a.admin = taken }, what: "the admin address"},
		{name: "taken xDS port", take: func(a *addrs, taken string) { a.xds = taken }, what: "the xDS address"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			held, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer held.Close()
			taken := held.Addr().String()
			cfg := base
			cfg.admin, cfg.listen = testenv.FreeAddr(t), testenv.FreeAddr(t)
			if tc.freshDir {
				cfg.stateDir = filepath.Join(t.TempDir(), "state")
			}
			tc.take(&cfg, taken)
			before := stateFiles(t, cfg.stateDir)
			start := time.Now()
			p := serve(t, "sluice serve", writeConfigDir(t, cfg, "r2"))
			code, took := exitOf(t, p, start)
			out := p.Output()
			t.Logf("exit %d after %s, %d lines:\n%s", code, took.Round(time.Millisecond), lines(out), out)
			want := regexp.MustCompile(`cannot bind ` + regexp.QuoteMeta(tc.what+" "+taken) + `: address already in use`)
			if code == 0 || !want.MatchString(out) {
				t.Fatalf("exit %d; output lacks %s", code, want)
			}
			if n := lines(out); n >= 100 {
				t.Errorf("%d log lines, want fewer than 100", n)
			}
			if after := stateFiles(t, cfg.stateDir); !equalMaps(before, after) {
				t.Errorf("rollout state written by a serve that could not bind:\nbefore %v\nafter  %v", keys(before), keys(after))
			}
			if strings.Contains(out, "sluice serving") || strings.Contains(out, "rollout state restored") {
				t.Errorf("the controller ran although an address could not be bound")
			}
			for _, addr := range []string{cfg.admin, cfg.listen} {
				if addr == taken {
					continue
				}
				if c, err := net.Dial("tcp", addr); err == nil {
					c.Close()
					t.Errorf("%s still bound after the failed start", addr)
				}
			}
		})
	}

	t.Run("A's configuration resumes where A stopped", func(t *testing.T) {
		if after := stateFiles(t, stateDir); !equalMaps(saved, after) {
			t.Fatalf("the failed starts changed A's state")
		}
		again := serve(t, "sluice serve A again", cfgDir)
		st := waitPaused30(t, again, base.admin, "r2")
		if st.Aborted || st.Step != 1 {
			t.Errorf("resumed: %+v", st)
		}
		// The router serves A's 30% again: the canary answers some requests.
		seen := map[string]int{}
		for range 40 {
			resp, err := http.Get("http://" + base.listen + "/")
			if err != nil {
				t.Fatal(err)
			}
			seen[resp.Header.Get("X-Backend")]++
			resp.Body.Close()
		}
		if seen["a"] == 0 || seen["b"] == 0 {
			t.Errorf("40 requests at 30%%: %v, want both versions", seen)
		}
	})
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func keys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k+" ("+strconv.Itoa(len(m[k]))+" bytes)")
	}
	return out
}
