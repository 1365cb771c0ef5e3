package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"time"

	"github.com/sluice-mesh/sluice/analyzer"
	"github.com/sluice-mesh/sluice/ha"
	"github.com/sluice-mesh/sluice/internal/statedir"
)

func init() {
	c := &command{
		name:    "state",
		usage:   "import -f FILE [-f FILE...] [--state-dir DIR]",
		summary: "Move a stateDir's rollout states into the configuration's store.etcd (before starting the replicas)",
	}
	c.run = func(args []string, stdout, stderr io.Writer) int {
		if len(args) == 0 || args[0] != "import" {
			if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "-help") {
				newFlagSet(c, stdout).Usage()
				return exitOK
			}
			fmt.Fprintln(stderr, "sluice state: want `sluice state import -f FILE`")
			newFlagSet(c, stderr).Usage()
			return exitUsage
		}
		fs := newFlagSet(c, stderr)
		var files stringList
		fs.Var(&files, "f", "configuration file (repeatable): its store.etcd is where the states go")
		dir := fs.String("state-dir", "", "the stateDir to import (default: the configuration's spec.stateDir)")
		if code, ok := parseFlags(fs, args[1:], stdout); !ok {
			return code
		}
		files = append(files, fs.Args()...)
		if len(files) == 0 {
			fmt.Fprintln(stderr, "sluice state import: no configuration: pass -f FILE")
			return exitUsage
		}
		if err := importStates(files, *dir, stdout, stderr); err != nil {
			fmt.Fprintf(stderr, "sluice state import: %v\n", err)
			return exitInvalid
		}
		return exitOK
	}
	register(c)
}

// importStates writes every rollout state of a stateDir into the configuration's etcd,
// skipping rollouts that already have one there. It holds the stateDir's lock meanwhile,
// so that no `sluice serve` writes the directory while it is read.
func importStates(files []string, dir string, stdout, stderr io.Writer) error {
	cfg, diags, err := loadConfig(files)
	if err != nil {
		for _, d := range diags {
			fmt.Fprintln(stderr, d.String())
		}
		return err
	}
	if cfg.ControlPlane.Etcd == nil {
		return errors.New("the configuration has no ControlPlane spec.store.etcd: nowhere to import into")
	}
	if dir == "" {
		dir = cfg.ControlPlane.StateDir
	}
	if dir == "" {
		return errors.New("no stateDir: pass --state-dir DIR, or keep spec.stateDir in the configuration for the import")
	}
	lock, err := statedir.Acquire(dir)
	if err != nil {
		return err
	}
	defer func() { _ = lock.Release() }()
	states, err := (&analyzer.FileStore{Dir: dir}).Load()
	if err != nil {
		return fmt.Errorf("read %s: %w", dir, err)
	}
	if len(states) == 0 {
		fmt.Fprintf(stdout, "%s holds no rollout state: nothing to import\n", dir)
		return nil
	}
	rep, err := ha.Open(cfg.ControlPlane.Etcd, ha.Options{ID: "sluice-state-import"})
	if err != nil {
		return err
	}
	defer rep.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	names := make([]string, 0, len(states))
	for n := range states {
		names = append(names, n)
	}
	sort.Strings(names)
	imported := 0
	for _, n := range names {
		st := states[n]
		b, err := json.Marshal(st)
		if err != nil {
			return fmt.Errorf("rollout %s: %w", n, err)
		}
		note := ""
		if cfg.Rollout(n) == nil {
			note = " (not in this configuration)"
		}
		switch err := rep.ImportState(ctx, n, b); {
		case errors.Is(err, ha.ErrStateExists):
			fmt.Fprintf(stdout, "skipped %s: etcd already has a state for it%s\n", n, note)
		case err != nil:
			return fmt.Errorf("rollout %s: etcd: %w (imported %d of %d before it)", n, err, imported, len(names))
		default:
			imported++
			fmt.Fprintf(stdout, "imported %s: %s, step %d, canary weight %d%%%s\n", n, st.Phase, st.Step, st.SetWeight, note)
		}
	}
	fmt.Fprintf(stdout, "%d of %d rollout states imported into %s (prefix %s)\n", imported, len(names),
		cfg.ControlPlane.Etcd.Endpoints, cfg.ControlPlane.Etcd.Prefix)
	return nil
}
