package main

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/sluice-mesh/sluice/analyzer"
)

// serveConfig is a small valid configuration: one listener, two clusters, one rollout
// that pauses for a person at 30%.
func serveConfig(listen, admin, stateDir, pause string) string {
	return `apiVersion: sluice.dev/v1alpha1
kind: Cluster
metadata: {name: s-stable}
spec:
  endpoints: [{address: 127.0.0.1:1}]
---
apiVersion: sluice.dev/v1alpha1
kind: Cluster
metadata: {name: s-canary}
spec:
  endpoints: [{address: 127.0.0.1:2}]
---
apiVersion: sluice.dev/v1alpha1
kind: Listener
metadata: {name: s-ingress}
spec:
  address: ` + listen + `
  routes: [{hosts: ["*"], pathPrefix: /, cluster: s-stable}]
---
apiVersion: sluice.dev/v1alpha1
kind: ControlPlane
metadata: {name: default}
spec:
  admin: {address: ` + admin + `}
  stateDir: ` + stateDir + `
---
apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata: {name: svc}
spec:
  strategy:
    canary:
      stableService: s-stable
      canaryService: s-canary
      steps:
      - setWeight: 30
      - pause: ` + pause + `
`
}

func writeConfig(t *testing.T, path, text string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestServeInvalidConfigPrintsDiagnostics(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "bad.yaml")
	writeConfig(t, p, "apiVersion: sluice.dev/v1alpha1\nkind: Cluster\nmetadata: {name: x}\nspec:\n  endpoints: [{address: 127.0.0.1:1}]\n  bogusField: 1\n")
	code, _, errs := runCLI("serve", "-f", p)
	if code != exitInvalid || !strings.Contains(errs, p+":") {
		t.Fatalf("exit %d, stderr %q", code, errs)
	}
	if code, _, _ := runCLI("serve"); code != exitUsage {
		t.Fatalf("no files: exit %d", code)
	}
}

func TestServeRefusesOffLoopbackAdminWithoutToken(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "c.yaml")
	l, _ := freeAddr("")
	writeConfig(t, p, serveConfig(l, "0.0.0.0:0", filepath.Join(dir, "state"), "{}"))
	// Config validation or the admin server refuses it; either way the reason names the token.
	var diags strings.Builder
	err := runServe(context.Background(), serveOptions{Files: []string{p}, Stderr: &diags})
	if err == nil || !strings.Contains(err.Error()+diags.String(), "token") {
		t.Fatalf("runServe = %v (%s), want a refusal naming the token", err, diags.String())
	}
	t.Logf("refused: %v %s", err, diags.String())
}

func TestServeRunsReloadsAndShutsDown(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "c.yaml")
	listen, _ := freeAddr("")
	writeConfig(t, p, serveConfig(listen, "127.0.0.1:0", filepath.Join(dir, "state"), "{}"))
	core, logs := observer.New(zap.InfoLevel)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	started := make(chan *runningServer, 1)
	done := make(chan error, 1)
	go func() {
		done <- runServe(ctx, serveOptions{Files: []string{p}, Logger: zap.New(core), PollEvery: 20 * time.Millisecond,
			Started: func(rs *runningServer) { started <- rs }})
	}()
	var rs *runningServer
	select {
	case rs = <-started:
	case err := <-done:
		t.Fatalf("runServe: %v", err)
	}
	get := func() analyzer.RolloutStatus {
		resp, err := http.Get("http://" + rs.AdminAddr + "/api/v1/rollouts/svc")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var st analyzer.RolloutStatus
		if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
			t.Fatal(err)
		}
		return st
	}
	waitUntil(t, "the rollout paused at 30%", func() bool {
		st := get()
		return st.Phase == analyzer.PhasePaused && st.ActualWeight == 30
	})
	waitUntil(t, "readyz", func() bool {
		resp, err := http.Get("http://" + rs.AdminAddr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})

	// An invalid file is refused; the running configuration stays.
	writeConfig(t, p, "kind: Nonsense\n")
	waitUntil(t, "the refused reload logged", func() bool {
		return logs.FilterMessageSnippet("reload refused").Len() > 0
	})
	if st := get(); st.Phase != analyzer.PhasePaused || st.ActualWeight != 30 {
		t.Fatalf("after a refused reload: %+v", st)
	}

	// A valid change is applied.
	writeConfig(t, p, serveConfig(listen, "127.0.0.1:0", filepath.Join(dir, "state"), "{duration: 1h}"))
	waitUntil(t, "the reload applied", func() bool {
		return logs.FilterMessage("configuration reloaded").Len() > 0
	})
	if err := rs.Reload(); err != nil {
		t.Fatalf("Reload: %v", err)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("runServe after cancel: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("runServe did not stop")
	}
	if _, err := http.Get("http://" + rs.AdminAddr + "/healthz"); err == nil {
		t.Fatal("admin still serving after shutdown")
	}
}

// TestServeWithXDS runs with an xDS server configured: the rollout still progresses (no
// proxy connected, so nothing to wait for), and the admin API serves the fleet's status.
func TestServeWithXDS(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "c.yaml")
	listen, _ := freeAddr("")
	xdsAddr, _ := freeAddr("")
	cfg := strings.Replace(serveConfig(listen, "127.0.0.1:0", filepath.Join(dir, "state"), "{}"),
		"  stateDir:", "  xds: {address: "+xdsAddr+"}\n  stateDir:", 1)
	writeConfig(t, p, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	started := make(chan *runningServer, 1)
	done := make(chan error, 1)
	go func() {
		done <- runServe(ctx, serveOptions{Files: []string{p}, Started: func(rs *runningServer) { started <- rs }})
	}()
	var rs *runningServer
	select {
	case rs = <-started:
	case err := <-done:
		t.Fatalf("runServe: %v", err)
	}
	waitUntil(t, "the rollout paused at 30%", func() bool {
		st, ok := rs.Controller.Get("svc")
		return ok && st.Phase == analyzer.PhasePaused && st.ActualWeight == 30
	})
	resp, err := http.Get("http://" + rs.AdminAddr + "/api/v1/xds/nodes")
	if err != nil {
		t.Fatal(err)
	}
	var nodes struct{ Nodes []map[string]any }
	err = json.NewDecoder(resp.Body).Decode(&nodes)
	resp.Body.Close()
	if resp.StatusCode != 200 || err != nil {
		t.Fatalf("nodes: %d %v", resp.StatusCode, err)
	}
	// The xDS port is bound.
	conn, err := net.Dial("tcp", xdsAddr)
	if err != nil {
		t.Fatalf("xDS server not listening on %s: %v", xdsAddr, err)
	}
	conn.Close()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := net.Dial("tcp", xdsAddr); err == nil {
		t.Fatal("xDS server still listening after shutdown")
	}
}
