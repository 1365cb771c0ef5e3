package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"time"
)

// testResult is what one `go test` run showed.
type testResult struct {
	Failed      []string // failing tests, "pkg: TestName/sub", in the order they failed
	PkgFailed   []string // packages that failed without a failing test (panic, TestMain, timeout)
	BuildFailed []string // packages (or test files) that did not compile
	TimedOut    bool     // the run went past its timeout
	Output      map[string][]string
	Elapsed     time.Duration
}

// passed reports whether every test ran and passed.
func (r *testResult) passed() bool {
	return len(r.Failed) == 0 && len(r.PkgFailed) == 0 && len(r.BuildFailed) == 0 && !r.TimedOut
}

// testEvent is one line of `go test -json` (cmd/test2json).
type testEvent struct {
	Action      string
	Package     string
	ImportPath  string
	Test        string
	Output      string
	FailedBuild string
}

// goTest runs `go test -count=1 -vet=off -json` on pkgs in dir, in its own process
// group (killed whole on timeout or when ctx ends), and collects what failed. The test
// binary's own -timeout fires first; the process group is killed a minute later if
// that did not end it.
func goTest(ctx context.Context, dir string, pkgs []string, run string, timeout time.Duration) (*testResult, error) {
	args := []string{"test", "-count=1", "-vet=off", "-json", "-timeout", timeout.String()}
	if run != "" {
		args = append(args, "-run", run)
	}
	args = append(args, pkgs...)
	cmd := exec.Command("go", args...)
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	killed := make(chan struct{})
	stop := make(chan struct{})
	go func() {
		t := time.NewTimer(timeout + time.Minute)
		defer t.Stop()
		select {
		case <-ctx.Done():
		case <-t.C:
		case <-stop:
			return
		}
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		close(killed)
	}()
	res := parseEvents(stdout)
	waitErr := cmd.Wait()
	close(stop)
	res.Elapsed = time.Since(start)
	select {
	case <-killed:
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		res.TimedOut = true
	default:
	}
	if waitErr != nil && res.passed() {
		// go test failed before any test ran (a package pattern matching nothing, a
		// broken go.mod): nothing here says what the mutant did.
		var ee *exec.ExitError
		if !errors.As(waitErr, &ee) {
			return nil, waitErr
		}
		return nil, fmt.Errorf("go test %s: %v\n%s", strings.Join(pkgs, " "), waitErr, strings.TrimSpace(stderr.String()))
	}
	if s := strings.TrimSpace(stderr.String()); s != "" && len(res.BuildFailed) > 0 {
		res.Output["build"] = append(res.Output["build"], strings.Split(s, "\n")...)
	}
	return res, nil
}

// parseEvents reads go test -json output.
func parseEvents(r io.Reader) *testResult {
	res := &testResult{Output: map[string][]string{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var e testEvent
		if json.Unmarshal(sc.Bytes(), &e) != nil {
			continue
		}
		key := e.Package
		if e.Test != "" {
			key += ": " + e.Test
		}
		switch e.Action {
		case "output", "build-output":
			if e.Action == "build-output" {
				key = "build"
			}
			if o := res.Output[key]; len(o) < 400 {
				res.Output[key] = append(o, strings.TrimRight(e.Output, "\n"))
			}
			if e.Test == "" && strings.Contains(e.Output, "panic: test timed out") {
				res.TimedOut = true
			}
		case "build-fail":
			res.BuildFailed = appendNew(res.BuildFailed, e.ImportPath)
		case "fail":
			switch {
			case e.Test != "":
				res.Failed = appendNew(res.Failed, key)
			case e.FailedBuild != "":
				res.BuildFailed = appendNew(res.BuildFailed, e.FailedBuild)
			default:
				res.PkgFailed = appendNew(res.PkgFailed, e.Package)
			}
		}
	}
	// A package is listed in PkgFailed only when none of its tests failed.
	res.PkgFailed = slices.DeleteFunc(res.PkgFailed, func(p string) bool {
		return slices.ContainsFunc(res.Failed, func(t string) bool { return strings.HasPrefix(t, p+": ") }) ||
			slices.Contains(res.BuildFailed, p)
	})
	return res
}

func appendNew(s []string, v string) []string {
	if slices.Contains(s, v) {
		return s
	}
	return append(s, v)
}

// culprits returns the failing tests worth naming: the deepest failing subtests (a
// parent fails with its subtest), without the module prefix, at most n.
func (r *testResult) culprits(module string, n int) []string {
	var leaves []string
	for _, t := range r.Failed {
		if slices.ContainsFunc(r.Failed, func(o string) bool { return strings.HasPrefix(o, t+"/") }) {
			continue
		}
		leaves = append(leaves, strings.TrimPrefix(strings.TrimPrefix(t, module), "/"))
	}
	for _, p := range r.PkgFailed {
		leaves = append(leaves, strings.TrimPrefix(strings.TrimPrefix(p, module), "/")+": (package failed)")
	}
	if len(leaves) > n {
		leaves = append(leaves[:n], fmt.Sprintf("and %d more", len(leaves)-n))
	}
	return leaves
}
