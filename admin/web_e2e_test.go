package admin

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
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

// chromiumDOM loads url in headless Chromium, lets its scripts run for a few seconds of
// virtual time, saves a screenshot to png (when not empty) and returns the rendered DOM.
func chromiumDOM(t *testing.T, url, png string) string {
	t.Helper()
	bin := testenv.Chromium(t)
	run := func(timeout time.Duration, extra ...string) string {
		ctx, cancel := context.WithTimeout(context.Background(), timeout+60*time.Second)
		defer cancel()
		args := append([]string{"--headless", "--no-sandbox", "--lang=en-US", "--disable-gpu", "--disable-quic", "--no-first-run",
			"--disable-background-networking", "--disable-component-update", "--disable-sync",
			"--disable-dev-shm-usage", "--user-data-dir=" + t.TempDir(),
			"--virtual-time-budget=" + strconv.Itoa(int(timeout.Milliseconds())), "--window-size=1280,1400"}, extra...)
		args = append(args, url)
		cmd := exec.CommandContext(ctx, bin, args...)
		// A zone far from UTC and a fixed locale, so that a test can tell local times.
		cmd.Env = append(os.Environ(), "TZ="+webViewZone, "LANG=en_US.UTF-8", "LC_ALL=en_US.UTF-8")
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

// webViewZone is the time zone the browser runs in (UTC+5:30, no daylight saving).
const webViewZone = "Asia/Kolkata"

// richStatus is an aborted release 2 of checkout, with release 1 (aborted too) in its
// history; eventAt is when its latest event happened.
func richStatus(eventAt time.Time) analyzer.RolloutStatus {
	now := time.Now().UTC()
	lat := 0.412
	m := func(ago time.Duration, v float64, phase analyzer.MeasurementPhase) analyzer.Measurement {
		return analyzer.Measurement{Phase: phase, Value: fmt.Sprintf("[%g]", v), Values: []float64{v},
			Message: "result[0] < 0.02", StartedAt: now.Add(-ago), FinishedAt: now.Add(-ago)}
	}
	return analyzer.RolloutStatus{
		Name: "checkout", Strategy: "canary", Phase: analyzer.PhaseDegraded, Aborted: true, Revision: "v2",
		Step: 2, Steps: 3, SetWeight: 0, ActualWeight: 0, StartedAt: now.Add(-60 * time.Second),
		StableService: "checkout-stable", CanaryService: "checkout-canary",
		StepList: []analyzer.StepStatus{{Index: 0, Kind: "setWeight", Text: "setWeight 20", State: "done"},
			{Index: 1, Kind: "pause", Text: "pause 30s", State: "done"},
			{Index: 2, Kind: "analysis", Text: "analysis canary-health", State: "aborted"}},
		Clusters: []analyzer.ClusterStatus{
			{Name: "checkout-stable", Role: "stable", Planes: analyzer.ClusterHealth{{Plane: "router", Healthy: 3, Total: 3}}},
			{Name: "checkout-canary", Role: "canary", Planes: analyzer.ClusterHealth{{Plane: "router", Healthy: 1, Ejected: 1, Total: 2}, {Plane: "xds", Healthy: 2, Total: 2}}}},
		Actions: []analyzer.CommandKind{analyzer.CmdAbort, analyzer.CmdRetry, analyzer.CmdStart},
		Events: []analyzer.Event{{Type: analyzer.EventHealthChanged, Rollout: "checkout", Time: eventAt,
			Message: "canary checkout-canary: 1/2 healthy endpoints in router (was 2/2)"}},
		ReloadError: &analyzer.ReloadError{Message: "reload refused: the configuration does not validate; the running configuration stays",
			Diagnostics: []string{"sluice.yaml:14: spec.endpoints[0].address: missing port"}, At: now.Add(-5 * time.Second)},
		Releases: []analyzer.ReleaseStatus{{Revision: "v1", StableService: "checkout-stable", CanaryService: "checkout-canary",
			Outcome: analyzer.OutcomeAborted, Reason: "aborted: analysis canary-health Failed: error-rate 0.09", Step: 2,
			StartedAt: now.Add(-20 * time.Minute), EndedAt: now.Add(-15 * time.Minute),
			History: []analyzer.WeightPoint{{Time: now.Add(-20 * time.Minute)}, {Time: now.Add(-19 * time.Minute), SetWeight: 20, ActualWeight: 20},
				{Time: now.Add(-16 * time.Minute)}, {Time: now.Add(-15 * time.Minute)}},
			AnalysisRuns: []analyzer.AnalysisRunStatus{{Name: "canary-health", Kind: "inline", Step: 2, Phase: analyzer.MeasurementFailed,
				Metrics: []analyzer.MetricStatus{
					{Name: "error-rate", Phase: analyzer.MeasurementFailed, Failed: 1, Measurements: []analyzer.Measurement{
						m(16*time.Minute+30*time.Second, 0.09, analyzer.MeasurementFailed)}},
					{Name: "p95-latency", Phase: analyzer.MeasurementTerminated}}}}}},
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
	eventAt := time.Now().Add(-20 * time.Second).UTC().Truncate(time.Second)
	f.items["checkout"] = richStatus(eventAt)
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
		`data-name="checkout"`, ">Degraded<", ">aborted<", ">2/3<", "[0.051]",
		"canary-health", "error-rate", "result[0] &lt; 0.02", "envoy-edge-1",
		"grpc-client-7", "no such cluster canary-x", ">NACK<", ">ACK<", "RDS 11", "(sent 12)", "grpc-client-7", "no such cluster canary-x", ">NACK<", "RDS 12",
		">Promote<", ">Abort<", "<svg", "<path", "<circle", ">polling<",
		"abort applied in", "0.412 s",
		// The step list, with the step the release was aborted at.
		`data-state="done" title="setWeight — done">✔ setWeight 20<`, `data-state="aborted" title="analysis — aborted">✘ analysis canary-health<`,
		// Each cluster's healthy endpoints, per data plane.
		`data-cluster="checkout-stable"`, `<span class="count" data-plane="router">3/3</span>`,
		`<span class="ep degraded" data-cluster="checkout-canary">`, `<span class="count" data-plane="router">1/2</span> router<span class="ejected"> (1 ejected)</span>`, `<span class="count" data-plane="xds">2/2</span>`,
		// The release history: release 1, its outcome, reason, chart and measurements.
		`data-revision="v1" data-outcome="aborted"`, ">aborted<", "aborted: analysis canary-health Failed: error-rate 0.09", "[0.09]",
		// The refused reload, the events, the Terminated badge.
		"Configuration reload refused at", "sluice.yaml:14: spec.endpoints[0].address: missing port",
		"canary checkout-canary: 1/2 healthy endpoints in router (was 2/2)", `class="badge Terminated"`,
	} {
		if !strings.Contains(dom, want) {
			t.Errorf("rendered page lacks %q", want)
		}
	}
	// Buttons: only what CheckCommand allows on an aborted release.
	for action, enabled := range map[string]bool{"promote": false, "promoteFull": false, "abort": true, "retry": true, "start": true} {
		re := regexp.MustCompile(`<button[^>]*data-action="` + action + `"[^>]*>`)
		b := re.FindString(dom)
		if b == "" {
			t.Errorf("no %s button", action)
		} else if strings.Contains(b, "disabled") == enabled {
			t.Errorf("%s button enabled=%v, want %v: %s", action, !enabled, enabled, b)
		}
	}
	// Local time: the event's time in the browser's zone, not in UTC.
	zone, err := time.LoadLocation(webViewZone)
	if err != nil {
		t.Fatal(err)
	}
	local, utc := eventAt.In(zone).Format("3:04:05 PM"), eventAt.Format("3:04:05 PM")
	if !strings.Contains(dom, `<span class="when">`+local+`</span>`) || strings.Contains(dom, utc) {
		t.Errorf("the event's time is not shown in local time (%s in %s; %s in UTC)", local, webViewZone, utc)
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
