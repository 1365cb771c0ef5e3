package admin

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluice-mesh/sluice/analyzer"
	"github.com/sluice-mesh/sluice/internal/testenv"
)

// chromiumDOM loads url in headless Chromium, lets its scripts run for a few seconds of
// virtual time, saves a screenshot to png (when not empty) and returns the rendered DOM.
func chromiumDOM(t *testing.T, url, png string) string {
	t.Helper()
	bin := testenv.Chromium(t)
	run := func(timeout time.Duration, extra ...string) string {
		ctx, cancel := context.WithTimeout(context.Background(), timeout+60*time.Second)
		defer cancel()
		args := append([]string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
			"--disable-background-networking", "--disable-component-update", "--disable-sync",
			"--disable-dev-shm-usage", "--user-data-dir=" + t.TempDir(),
			"--virtual-time-budget=" + strconv.Itoa(int(timeout.Milliseconds())), "--window-size=1280,1400"}, extra...)
		args = append(args, url)
		cmd := exec.CommandContext(ctx, bin, args...)
		var out, errb strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &errb
		if err := cmd.Run(); err != nil {
			t.Fatalf("chromium %v: %v\n%s", extra, err, errb.String())
		}
		return out.String()
	}
	// The page marks <body data-loaded="1"> once drawn. Callers pass ?poll=N: an event
	// stream never ends, so Chromium's virtual time would never advance past it.
	var dom string
	timeout := 3 * time.Second
	for range 4 {
		extra := []string{"--dump-dom"}
		if png != "" {
			extra = append(extra, "--screenshot="+png)
		}
		if dom = run(timeout, extra...); strings.Contains(dom, `data-loaded="1"`) {
			break
		}
		timeout *= 2
	}
	if !strings.Contains(dom, `data-loaded="1"`) {
		t.Fatalf("the web view never finished drawing:\n%s", dom)
	}
	if png != "" {
		if fi, err := os.Stat(png); err != nil || fi.Size() < 10_000 {
			t.Fatalf("screenshot %s: %v", png, err)
		}
		t.Logf("screenshot saved to %s", png)
		// SLUICE_ARTIFACTS=DIR keeps a copy after the test's temporary directory is gone.
		if dir := os.Getenv("SLUICE_ARTIFACTS"); dir != "" {
			if b, err := os.ReadFile(png); err == nil && os.MkdirAll(dir, 0o755) == nil {
				keep := filepath.Join(dir, t.Name()+".png")
				if os.WriteFile(keep, b, 0o644) == nil {
					t.Logf("screenshot kept as %s", keep)
				}
			}
		}
	}
	return dom
}

func richStatus() analyzer.RolloutStatus {
	now := time.Now().UTC()
	lat := 0.412
	m := func(ago time.Duration, v float64, phase analyzer.MeasurementPhase) analyzer.Measurement {
		return analyzer.Measurement{Phase: phase, Value: fmt.Sprintf("[%g]", v), Values: []float64{v},
			Message: "result[0] < 0.02", StartedAt: now.Add(-ago), FinishedAt: now.Add(-ago)}
	}
	return analyzer.RolloutStatus{
		Name: "checkout", Strategy: "canary", Phase: analyzer.PhaseDegraded, Aborted: true,
		Step: 2, Steps: 6, SetWeight: 0, ActualWeight: 0,
		StableService: "checkout-stable", CanaryService: "checkout-canary",
		Message: "analysis canary-health failed: error-rate 0.051 did not meet result[0] < 0.02", AbortLatencySeconds: &lat,
		History: []analyzer.WeightPoint{
			{Time: now.Add(-60 * time.Second)},
			{Time: now.Add(-50 * time.Second), SetWeight: 20},
			{Time: now.Add(-49 * time.Second), SetWeight: 20, ActualWeight: 20},
			{Time: now.Add(-10 * time.Second), SetWeight: 0, ActualWeight: 0},
		},
		AnalysisRuns: []analyzer.AnalysisRunStatus{{
			Name: "canary-health", Kind: "inline", Step: 2, Phase: analyzer.MeasurementFailed,
			Metrics: []analyzer.MetricStatus{{
				Name: "error-rate", Provider: "prometheus(embedded)", SuccessCondition: "result[0] < 0.02",
				Phase: analyzer.MeasurementFailed, Successful: 2, Failed: 1,
				Measurements: []analyzer.Measurement{
					m(30*time.Second, 0.004, analyzer.MeasurementSuccessful),
					m(20*time.Second, 0.011, analyzer.MeasurementSuccessful),
					m(11*time.Second, 0.051, analyzer.MeasurementFailed),
				},
			}},
		}},
	}
}

// TestWebViewInChromium renders the web view in headless Chromium and checks what a
// person would see: the rollout, its phase and step, the chart, the metric with its
// condition, the xDS node, and the action buttons.
func TestWebViewInChromium(t *testing.T) {
	f := newFake()
	f.items["checkout"] = richStatus()
	nodes := httpHandlerString(`{"nodes":[
		{"key":"envoy/envoy-edge-1","id":"envoy-edge-1","cluster":"edge","shape":"envoy","connected":true,"streams":1,
		 "appliedVersion":12,"reverted":false,"responses":9,"nacks":0,
		 "types":[{"type":"CDS","sent":"3","acked":"3"},{"type":"RDS","sent":"12","acked":"12"}]},
		{"key":"grpc/grpc-client-7","id":"grpc-client-7","shape":"grpc","connected":true,"streams":1,
		 "appliedVersion":11,"reverted":true,"responses":12,"nacks":1,
		 "lastNack":{"type":"RDS","snapshotVersion":12,"message":"route: no such cluster canary-x"},
		 "types":[{"type":"RDS","sent":"12","acked":"11","nacked":"12","nackMessage":"route: no such cluster canary-x"}]}]}`)
	s, err := New(Options{Address: "127.0.0.1:0", Rollouts: f, Nodes: nodes, EventInterval: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s.Handler())
	defer ts.Close()
	png := filepath.Join(t.TempDir(), "webview.png")
	dom := chromiumDOM(t, ts.URL+"/?poll=200", png)
	for _, want := range []string{
		`data-name="checkout"`, ">Degraded<", ">aborted<", ">2/6<", "[0.051]",
		"canary-health", "error-rate", "result[0] &lt; 0.02", "envoy-edge-1",
		"grpc-client-7", "no such cluster canary-x", ">NACK<", ">ACK<", "RDS 11", "(sent 12)", "grpc-client-7", "no such cluster canary-x", ">NACK<", "RDS 12",
		">Promote<", ">Abort<", "<svg", "<path", "<circle", ">polling<",
		"abort applied in", "0.412 s",
	} {
		if !strings.Contains(dom, want) {
			t.Errorf("rendered page lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("DOM:\n%s", dom)
	}
}

func httpHandlerString(body string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(body))
	})
}
