package testenv

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeProgram writes an executable shell script named name into dir.
func fakeProgram(t *testing.T, dir, name, script string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\n"+script+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
}

// recorder is a testing.TB that records Skip and Fatal instead of ending the test.
type recorder struct {
	testing.TB
	skipped, failed string
}

func (r *recorder) Helper()             {}
func (r *recorder) Logf(string, ...any) {}
func (r *recorder) Skip(args ...any)    { r.skipped = strings.TrimSpace(sprint(args)) }
func (r *recorder) Fatal(args ...any)   { r.failed = strings.TrimSpace(sprint(args)) }
func sprint(args []any) (s string) {
	for _, a := range args {
		s += a.(string) + " "
	}
	return s
}

// TestChromiumChecksWhatItFinds: a chromium-browser stub that does not run is passed
// over for a working chromium; when only the stub exists, the test skips — or under
// CI fails — naming what was tried; a working chromium-browser alone is used.
func TestChromiumChecksWhatItFinds(t *testing.T) {
	snapStub := `echo "Command '/usr/bin/chromium-browser' requires the chromium snap to be installed." >&2; exit 1`
	for _, tc := range []struct {
		name     string
		programs map[string]string
		ci       bool
		want     string // program name found; "" none
		wantMsg  string
	}{
		{name: "Debian chromium", programs: map[string]string{"chromium": `echo "/usr/bin/chromium: 9: [: 25276510208: unexpected operator" >&2; echo "Chromium 156.0.8078.108 built on Debian GNU/Linux 12"`}, want: "chromium"},
		{name: "Ubuntu chromium-browser", programs: map[string]string{"chromium-browser": `echo "Chromium 124.0.6367.60 snap"`}, want: "chromium-browser"},
		{name: "stub chromium-browser, working chromium", programs: map[string]string{"chromium-browser": snapStub, "chromium": `echo "Chromium 156.0"`}, want: "chromium"},
		{name: "stub only", programs: map[string]string{"chromium-browser": snapStub}, wantMsg: "requires the chromium snap"},
		{name: "stub only under CI", programs: map[string]string{"chromium-browser": snapStub}, ci: true, wantMsg: "CI=true"},
		{name: "runs but is not Chromium", programs: map[string]string{"chromium": `echo "hello"`}, wantMsg: "no Chromium version"},
		{name: "nothing", wantMsg: "chromium: not found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			for n, s := range tc.programs {
				fakeProgram(t, dir, n, s)
			}
			t.Setenv("PATH", dir)
			t.Setenv("CI", map[bool]string{true: "true", false: ""}[tc.ci])
			r := &recorder{TB: t}
			got := Chromium(r)
			if tc.want != "" {
				if got != filepath.Join(dir, tc.want) || r.skipped != "" || r.failed != "" {
					t.Fatalf("Chromium = %q (skip %q, fail %q), want %s", got, r.skipped, r.failed, tc.want)
				}
				return
			}
			msg := r.skipped
			if tc.ci {
				msg = r.failed
				if r.skipped != "" {
					t.Fatalf("skipped under CI: %s", r.skipped)
				}
			} else if r.failed != "" {
				t.Fatalf("failed outside CI: %s", r.failed)
			}
			if !strings.Contains(msg, tc.wantMsg) || !strings.Contains(msg, "MISSING DEPENDENCY") {
				t.Fatalf("message %q, want it to contain %q", msg, tc.wantMsg)
			}
		})
	}
}
