package main

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluice-mesh/sluice/analyzer"
	"github.com/sluice-mesh/sluice/internal/testenv"
)

// checkWebViewDuringDemo waits until the demo's second release is under way (the first,
// aborted, is then in its history), renders the web view in headless Chromium, and
// returns the assertions to run on the test's goroutine.
func checkWebViewDuringDemo(addr string) func(*testing.T) {
	bin, version, why := testenv.FindChromium()
	if bin == "" {
		return func(t *testing.T) {
			testenv.Missing(t, why+"; install the Debian package chromium (make test-deps does it when it can)")
		}
	}
	// Wait for release 2's first weight step so that the chart, the steps and the release
	// history have something to show.
	deadline := time.Now().Add(80 * time.Second)
	var st analyzer.RolloutStatus
	for time.Now().Before(deadline) {
		if resp, err := http.Get("http://" + addr + "/api/v1/rollouts/" + demoRollout); err == nil {
			_ = json.NewDecoder(resp.Body).Decode(&st)
			resp.Body.Close()
			if st.ActualWeight > 0 && len(st.Releases) > 0 {
				break
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	if st.ActualWeight == 0 || len(st.Releases) == 0 {
		return func(t *testing.T) { t.Fatalf("the demo's second release never took weight: %+v", st) }
	}
	dir, err := os.MkdirTemp("", "sluice-webview-")
	if err != nil {
		return func(t *testing.T) { t.Fatal(err) }
	}
	defer os.RemoveAll(dir)
	png := filepath.Join(dir, "demo-webview.png")
	var dom string
	var runErr error
	for budget := 3 * time.Second; budget <= 12*time.Second; budget *= 2 {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		cmd := exec.CommandContext(ctx, bin, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
			"--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
			"--disable-dev-shm-usage", "--user-data-dir="+filepath.Join(dir, "profile"),
			"--virtual-time-budget="+strconv.Itoa(int(budget.Milliseconds())), "--window-size=1280,1400",
			"--dump-dom", "--screenshot="+png, "http://"+addr+"/?poll=250")
		var out strings.Builder
		cmd.Stdout = &out
		runErr = cmd.Run()
		cancel()
		dom = out.String()
		if runErr == nil && strings.Contains(dom, `data-loaded="1"`) {
			break
		}
	}
	pngBytes, pngErr := os.ReadFile(png)
	return func(t *testing.T) {
		if runErr != nil {
			t.Fatalf("chromium: %v", runErr)
		}
		for _, want := range []string{`data-loaded="1"`, `data-name="demo-api"`, "demo-stable", "demo-canary",
			`class="chart"`, "<path", ">Promote<", ">Abort<"} {
			if !strings.Contains(dom, want) {
				t.Errorf("rendered web view lacks %q", want)
			}
		}
		if !regexp.MustCompile(`class="step">\d/8<`).MatchString(dom) {
			t.Errorf("rendered web view lacks the step i/8")
		}
		if !regexp.MustCompile(`class="badge phase (Progressing|Paused|Healthy|Degraded)"`).MatchString(dom) {
			t.Errorf("rendered web view lacks the phase")
		}
		// The step list with the current step, both clusters' healthy endpoints in the
		// router, and release 1 — aborted by its analysis — in the history, with its chart.
		for _, re := range []string{
			`<ol class="steps" start="0">(<li class="step-item (done|current|pending)"[^>]*>[^<]*</li>){8}</ol>`,
			`<li class="step-item current" data-state="current"`,
			`data-cluster="demo-stable"><b>demo-stable</b> \(stable\) <span class="count" data-plane="router">1/1</span> router`,
			`data-cluster="demo-canary"><b>demo-canary</b> \(canary\) <span class="count" data-plane="router">1/1</span> router`,
			`Earlier releases \(1\)`,
			`<details class="release" data-key="[^"]+" data-revision="[^"]+" data-outcome="aborted"><summary>.*?aborted: analysis canary-health Failed`,
			`<details class="release".*?<svg class="chart".*?<path`,
		} {
			if !regexp.MustCompile(re).MatchString(dom) {
				t.Errorf("rendered web view lacks %s", re)
			}
		}
		if pngErr != nil || len(pngBytes) < 10_000 {
			t.Fatalf("screenshot: %v (%d bytes)", pngErr, len(pngBytes))
		}
		keep := filepath.Join(t.TempDir(), "demo-webview.png")
		if d := os.Getenv("SLUICE_ARTIFACTS"); d != "" && os.MkdirAll(d, 0o755) == nil {
			keep = filepath.Join(d, "TestDemoFast-webview.png")
		}
		if err := os.WriteFile(keep, pngBytes, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot of the web view during the demo (%s): %s", version, keep)
		if t.Failed() {
			t.Logf("DOM:\n%s", dom)
		}
	}
}
