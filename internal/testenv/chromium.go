package testenv

import (
	"context"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"
)

// chromiumVersion is what a real Chromium (or Chrome) prints for --version.
var chromiumVersion = regexp.MustCompile(`(?i)\b(chromium|chrome)\b.*\d+\.\d+`)

// Chromium returns the path of a Chromium that really runs (FindChromium). When none
// runs, the test skips loudly, or fails under CI=true: never a pass without a browser.
func Chromium(t testing.TB) string {
	t.Helper()
	path, version, why := FindChromium()
	if path == "" {
		Missing(t, why+"; install the Debian package chromium (make test-deps does it when it can)")
		return ""
	}
	t.Logf("using %s: %s", path, version)
	return path
}

// FindChromium returns the first of `chromium` (Debian) and `chromium-browser` (Ubuntu,
// Alpine) found on PATH whose --version prints a Chromium version, with that version. A
// name that exists but does not run — Ubuntu's chromium-browser stub asking for the
// snap, a broken install — is passed over. When none runs, path is "" and why says what
// was tried; pass it to Missing.
func FindChromium() (path, version, why string) {
	var tried []string
	for _, name := range []string{"chromium", "chromium-browser"} {
		p, err := exec.LookPath(name)
		if err != nil {
			tried = append(tried, name+": not found")
			continue
		}
		v, err := runVersion(p)
		if err != nil {
			tried = append(tried, p+": "+err.Error())
			continue
		}
		return p, v, ""
	}
	return "", "", "no working Chromium (" + strings.Join(tried, "; ") + ")"
}

func runVersion(path string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, "--version")
	var stderr strings.Builder
	cmd.Stderr = &stderr // Debian's wrapper script may complain there; the version is on stdout
	out, err := cmd.Output()
	if err != nil {
		return "", &versionError{cause: err.Error(), out: firstLine(stderr.String() + string(out))}
	}
	for _, line := range strings.Split(string(out), "\n") {
		if chromiumVersion.MatchString(line) {
			return strings.TrimSpace(line), nil
		}
	}
	return "", &versionError{cause: "--version printed no Chromium version", out: firstLine(string(out) + stderr.String())}
}

func firstLine(s string) string {
	return strings.TrimSpace(strings.SplitN(strings.TrimSpace(s), "\n", 2)[0])
}

type versionError struct{ cause, out string }

func (e *versionError) Error() string { return e.cause + ": " + strings.TrimSpace(e.out) }

// Missing reports that something a test needs (a program, a file outside the module)
// is not there: why says what is missing and how to provide it. It skips the test with
// a loud message, or fails it under CI=true, where nothing may be skipped.
func Missing(t testing.TB, why string) {
	t.Helper()
	msg := "MISSING DEPENDENCY: " + why
	if InCI() {
		t.Fatal(msg + " — CI=true, so this is a failure, not a skip")
		return
	}
	t.Skip(msg)
}
