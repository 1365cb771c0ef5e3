package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluice-mesh/sluice/analyzer"
	"github.com/sluice-mesh/sluice/internal/testenv"
)

// TestStateImportMovesAStateDirIntoEtcd: a rollout paused at 30% by a single Sluice is
// imported into etcd, and a replica on that etcd resumes it there, serving 30% from its
// first snapshot; a second import changes nothing.
func TestStateImportMovesAStateDirIntoEtcd(t *testing.T) {
	etcd := testenv.StartEtcd(t)
	dir := t.TempDir()
	stateDir := filepath.Join(dir, "state")
	listen, _ := freeAddr("")
	single := serveConfig(listen, "127.0.0.1:0", stateDir, "{}")
	serveFor(t, single, func(rs *runningServer) {
		waitUntil(t, "the rollout paused at 30%", func() bool {
			st, ok := rs.Controller.Get("svc")
			return ok && st.Phase == analyzer.PhasePaused && st.ActualWeight == 30
		})
	})

	onEtcd := withEtcd(single, etcd.Endpoints())
	replicated := filepath.Join(dir, "replicated.yaml")
	writeConfig(t, replicated, onEtcd)
	code, out, errs := runCLI("state", "import", "-f", replicated)
	if code != exitOK || !strings.Contains(out, "imported svc: Paused, step 1, canary weight 30%") || !strings.Contains(out, "1 of 1 rollout states imported") {
		t.Fatalf("import: exit %d\n%s%s", code, out, errs)
	}
	code, out, _ = runCLI("state", "import", "-f", replicated)
	if code != exitOK || !strings.Contains(out, "skipped svc: etcd already has a state for it") || !strings.Contains(out, "0 of 1") {
		t.Errorf("second import: exit %d\n%s", code, out)
	}

	serveFor(t, onEtcd, func(rs *runningServer) {
		if w := rs.Controller.Snapshot().Listeners[0].Routes[0].WeightOf("s-canary"); w != 30 {
			t.Errorf("the replica's first snapshot gives the canary %d%%, want the imported 30%%", w)
		}
		waitUntil(t, "the replica leads and resumes the imported rollout", func() bool {
			st, ok := rs.Controller.Get("svc")
			return ok && st.Phase == analyzer.PhasePaused && st.Step == 1 && st.SetWeight == 30 && st.ActualWeight == 30
		})
	})
}

// TestStateImportRefusesWhatItCannotDo: no store.etcd, no stateDir, an empty stateDir.
func TestStateImportRefusesWhatItCannotDo(t *testing.T) {
	dir := t.TempDir()
	listen, _ := freeAddr("")
	alone := filepath.Join(dir, "alone.yaml")
	writeConfig(t, alone, serveConfig(listen, "127.0.0.1:0", filepath.Join(dir, "s"), "{}"))
	if code, _, errs := runCLI("state", "import", "-f", alone); code != exitInvalid || !strings.Contains(errs, "has no ControlPlane spec.store.etcd") {
		t.Errorf("without store.etcd: exit %d %s", code, errs)
	}
	empty := filepath.Join(dir, "empty.yaml")
	writeConfig(t, empty, withEtcd(serveConfig(listen, "127.0.0.1:0", filepath.Join(dir, "none"), "{}"), []string{"http://127.0.0.1:1"}))
	if code, out, errs := runCLI("state", "import", "-f", empty); code != exitOK || !strings.Contains(out, "holds no rollout state") {
		t.Errorf("empty stateDir: exit %d %s %s", code, out, errs)
	}
	if code, _, errs := runCLI("state", "export"); code != exitUsage || !strings.Contains(errs, "sluice state import") {
		t.Errorf("unknown subcommand: exit %d %s", code, errs)
	}
}
