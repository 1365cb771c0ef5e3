// Package testenv helps end-to-end tests find the real programs they need
// (prometheus, chromium, nginx) and skip loudly — or, under CI, fail — when one is missing.
package testenv

import (
	"os"
	"os/exec"
	"testing"
)

// InCI reports whether the tests run under CI (CI=true), where nothing may be skipped.
func InCI() bool { return os.Getenv("CI") == "true" || os.Getenv("CI") == "1" }

// LookPath returns the path of the named program, trying each name in turn. When none is
// found it skips the test with a loud message naming what to install, or fails it under CI.
func LookPath(t testing.TB, debianPackage string, names ...string) string {
	t.Helper()
	for _, n := range names {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
	}
	msg := "MISSING DEPENDENCY: none of " + join(names) + " found; install the Debian package " +
		debianPackage + " (make test-deps does it when it can)"
	if InCI() {
		t.Fatal(msg + " — CI=true, so this is a failure, not a skip")
	}
	t.Skip(msg)
	return ""
}

func join(names []string) string {
	s := ""
	for i, n := range names {
		if i > 0 {
			s += ", "
		}
		s += n
	}
	return s
}
