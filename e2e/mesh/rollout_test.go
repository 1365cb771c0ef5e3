package mesh

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sluice-mesh/sluice/analyzer"
	"github.com/sluice-mesh/sluice/internal/testenv"
	"github.com/sluice-mesh/sluice/xds"
)

// The Rollout of testdata/sluice.yaml: setWeight 20 → analysis → setWeight 50 → pause 3s.
const (
	rolloutName  = "greeter"
	stepAnalysis = 1
	stepCount    = 4
	// interval is the error-ratio metric's interval.
	interval = 3 * time.Second
	// clients is how many proxyless gRPC clients each scenario runs, and rpcPeriod the
	// time between two RPCs of one client (6 × up to 100 RPC/s: enough RPCs per step for the
	// split checks' binomial bounds).
	clients   = 6
	rpcPeriod = 10 * time.Millisecond
)

// mesh is one scenario's running parts.
type mesh struct {
	stable, canary backend
	serve          *serve
	clients        []*client
}

// startMesh starts the two backends (the canary failing canaryErrors of its RPCs), a
// Prometheus scraping both every second, `sluice serve` on testdata/sluice.yaml, and the
// proxyless clients, and waits until every client has had an answer.
func startMesh(t *testing.T, canaryErrors float64) *mesh {
	t.Helper()
	testenv.LookPath(t, "prometheus", "prometheus") // skip (fail under CI) before starting anything
	m := &mesh{stable: startBackend(t, "stable", 0), canary: startBackend(t, "canary", canaryErrors)}
	prom := testenv.StartPrometheus(t, time.Second, m.stable.http, m.canary.http)
	t.Cleanup(func() {
		if t.Failed() { // what the analysis saw
			for _, q := range []string{`up`, `sum by (backend) (http_requests_total)`,
				`sum by (backend) (rate(http_requests_total[5s]))`, `sum by (backend) (rate(http_errors_total[5s]))`} {
				t.Logf("prometheus %s: %s", q, promQuery(prom.URL, q))
			}
		}
	})
	// Prometheus syncs its scrape targets a few seconds after it starts: start the rollout
	// only once both backends have been scraped, as they would be in production.
	testenv.WaitFor(t, 20*time.Second, "prometheus scraping both backends", func() bool {
		return promValue(prom.URL, `count(up{job="sluice-test"} == 1)`) == "2"
	})

	dir := t.TempDir()
	admin, xdsAddr, listen := testenv.FreeAddr(t), testenv.FreeAddr(t), testenv.FreeAddr(t)
	tmpl, err := os.ReadFile(filepath.Join("testdata", "sluice.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{
		"ADMIN": admin, "XDS": xdsAddr, "LISTEN": listen, "STATE": filepath.Join(dir, "state"),
		"STABLE": m.stable.grpc, "CANARY": m.canary.grpc, "PROMETHEUS": prom.URL,
	}
	cfg := os.Expand(string(tmpl), func(k string) string {
		v, ok := vars[k]
		if !ok {
			t.Fatalf("testdata/sluice.yaml: unknown placeholder ${%s}", k)
		}
		return v
	})
	cfgPath := filepath.Join(dir, "sluice.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	// The configuration is what a user would write: valid, and without a warning.
	out, err := exec.Command(sluiceBin, "validate", "-f", cfgPath).CombinedOutput()
	if err != nil || strings.Contains(string(out), "warning:") {
		t.Fatalf("sluice validate: %v\n%s", err, out)
	}
	m.serve = startServe(t, cfgPath, admin, xdsAddr)
	byAddr := map[string]string{m.stable.grpc: m.stable.name, m.canary.grpc: m.canary.name}
	m.clients = startClients(t, clients, xdsAddr, byAddr, rpcPeriod)
	testenv.WaitFor(t, 15*time.Second, "every proxyless client answered through xDS", func() bool {
		for _, c := range m.clients {
			if n := tally(c.between(time.Time{}, time.Time{})); n["stable"]+n["canary"] == 0 {
				return false
			}
		}
		return true
	})
	return m
}

// promQuery returns the raw JSON answer of an instant query, or the error.
func promQuery(base, q string) string {
	resp, err := http.Get(base + "/api/v1/query?query=" + url.QueryEscape(q))
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// promValue returns the value of a one-sample instant query as text ("" when there is
// none).
func promValue(base, q string) string {
	var r struct {
		Data struct {
			Result []struct {
				Value [2]any `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal([]byte(promQuery(base, q)), &r); err != nil || len(r.Data.Result) != 1 {
		return ""
	}
	v, _ := r.Data.Result[0].Value[1].(string)
	return v
}

// waitEach waits until every client has at least n observations sent at or after from.
func (m *mesh) waitEach(t *testing.T, n int, from time.Time, what string) {
	t.Helper()
	testenv.WaitFor(t, 15*time.Second, what, func() bool {
		for _, c := range m.clients {
			if len(c.between(from, time.Time{})) < n {
				return false
			}
		}
		return true
	})
}

func (m *mesh) stopClients() {
	for _, c := range m.clients {
		c.stop()
	}
}

// checkNodes asserts that Sluice served every client as its own proxyless gRPC node,
// connected, with no NACK, all at the same applied routes version.
func (m *mesh) checkNodes(t *testing.T) {
	t.Helper()
	nodes := m.serve.nodes(t)
	byID := map[string]xds.NodeStatus{}
	for _, n := range nodes {
		byID[n.ID] = n
	}
	var versions []uint64
	for _, c := range m.clients {
		n, ok := byID[c.id]
		if !ok {
			t.Fatalf("xDS node %s missing from /api/v1/xds/nodes: %+v", c.id, nodes)
		}
		if n.Shape != xds.ShapeGRPC || !n.Connected || n.NACKs != 0 || n.AppliedVersion == 0 {
			t.Fatalf("xDS node %s: shape %s connected %v NACKs %d applied %d; want a connected grpc node, no NACK",
				c.id, n.Shape, n.Connected, n.NACKs, n.AppliedVersion)
		}
		versions = append(versions, n.AppliedVersion)
	}
	if slices.Min(versions) != slices.Max(versions) {
		t.Fatalf("clients applied different routes versions: %v", versions)
	}
}

// inlineRun returns the analysis step's run.
func inlineRun(t *testing.T, st analyzer.RolloutStatus) analyzer.AnalysisRunStatus {
	t.Helper()
	for _, r := range st.AnalysisRuns {
		if r.Kind == "inline" && r.Step == stepAnalysis {
			return r
		}
	}
	b, _ := json.MarshalIndent(st, "", " ")
	t.Fatalf("no inline analysis run at step %d:\n%s", stepAnalysis, b)
	return analyzer.AnalysisRunStatus{}
}

// errorRatio returns the run's error-ratio metric, checking it was asked of the real
// Prometheus.
func errorRatio(t *testing.T, run analyzer.AnalysisRunStatus) analyzer.MetricStatus {
	t.Helper()
	for _, m := range run.Metrics {
		if m.Name == "error-ratio" {
			if m.Provider != "prometheus" {
				t.Fatalf("error-ratio provider %q, want the remote prometheus", m.Provider)
			}
			return m
		}
	}
	t.Fatalf("analysis run %s has no error-ratio metric: %+v", run.Name, run)
	return analyzer.MetricStatus{}
}

// TestBadCanaryAborted: a canary failing 30% of its RPCs is aborted by its first
// measurement (Degraded), and every proxyless client is back on the stable within one
// analysis interval plus one second of that measurement: no RPC sent later reaches the
// canary.
func TestBadCanaryAborted(t *testing.T) {
	t.Parallel()
	m := startMesh(t, 0.3)
	s := m.serve

	st := s.waitStatus(t, 40*time.Second, "the abort", func(st analyzer.RolloutStatus) {
		if st.Phase == analyzer.PhaseHealthy || st.Step > stepAnalysis {
			t.Fatalf("bad canary went on: phase %s step %d", st.Phase, st.Step)
		}
	}, func(st analyzer.RolloutStatus) bool { return st.Aborted && st.ActualWeight == 0 })
	abortSeen := time.Now()

	if st.Phase != analyzer.PhaseDegraded || st.Step != stepAnalysis || st.SetWeight != 0 {
		t.Fatalf("aborted: phase %s step %d setWeight %d; want Degraded at step %d, weight 0",
			st.Phase, st.Step, st.SetWeight, stepAnalysis)
	}
	run := inlineRun(t, st)
	mt := errorRatio(t, run)
	if run.Phase != analyzer.MeasurementFailed || mt.Phase != analyzer.MeasurementFailed ||
		mt.Failed != 1 || mt.Successful != 0 || mt.Count != 1 {
		t.Fatalf("not aborted by its first error-ratio measurement: run %s, metric %+v", run.Phase, mt)
	}
	failing := mt.Measurements[len(mt.Measurements)-1]
	// 30% of the canary's RPCs fail: the ratio Prometheus computed is far above 5%.
	if failing.Phase != analyzer.MeasurementFailed || len(failing.Values) != 1 ||
		failing.Values[0] < 0.1 || failing.Values[0] > 0.6 {
		t.Fatalf("failing measurement %+v; want an error ratio near 0.3", failing)
	}
	// The services' own series have no per-cluster request counter Sluice can read, so
	// the default minRequests gate is reported as not enforced rather than waiting forever.
	if !strings.Contains(failing.Message, "minRequests not enforced") {
		t.Fatalf("failing measurement message %q; want it to say minRequests is not enforced", failing.Message)
	}
	// How fast is for bench/; here it must be recorded, and the RPCs below show the
	// abort took effect within one interval.
	if st.AbortLatencySeconds == nil || *st.AbortLatencySeconds < 0 {
		t.Fatalf("abort latency %v; want it recorded", st.AbortLatencySeconds)
	}
	t.Logf("failed on %s (%s); abort latency (measurement → every node ACKed weight 0) %.3fs",
		failing.Value, failing.Message, *st.AbortLatencySeconds)

	bound := failing.FinishedAt.Add(interval + time.Second)
	from := bound
	if abortSeen.After(from) {
		from = abortSeen
	}
	m.waitEach(t, 25, from, "25 RPCs of every client after the abort")
	m.stopClients()
	m.checkNodes(t)

	for _, c := range m.clients {
		all := c.between(time.Time{}, time.Time{})
		n := tally(all)
		canaryFailed := 0
		for _, o := range all {
			if o.backend == "canary" && !o.ok {
				canaryFailed++
			}
		}
		if n["canary"] == 0 || canaryFailed == 0 || n["stable"] == 0 {
			t.Fatalf("client %s: answers %v, %d failed at the canary; want both backends, canary failures seen", c.id, n, canaryFailed)
		}
		last := lastSentTo(all, "canary")
		t.Logf("client %s: %v; last RPC to reach the canary sent at %+dms from the failing measurement's end",
			c.id, n, last.Sub(failing.FinishedAt).Milliseconds())
		late := c.between(bound, time.Time{})
		if ln := tally(late); ln["canary"] != 0 || ln["stable"] != len(late) {
			t.Fatalf("client %s: of %d RPCs sent from one interval + 1 s after the failing measurement, %v; want all on stable",
				c.id, len(late), ln)
		}
		after := c.between(abortSeen, time.Time{})
		if an := tally(after); an["stable"] != len(after) {
			t.Fatalf("client %s: after the abort was reported, %v of %d RPCs; want all on stable", c.id, an, len(after))
		}
		for _, o := range after {
			if !o.ok {
				t.Fatalf("client %s: an RPC to the stable failed after the abort", c.id)
			}
		}
	}
}

// TestGoodCanaryPromoted: a healthy canary passes both measurements, walks 20% → 50% →
// 100% with the proxyless clients following each split, and ends Healthy with every
// client on the canary.
func TestGoodCanaryPromoted(t *testing.T) {
	t.Parallel()
	m := startMesh(t, 0)
	s := m.serve

	var trail []int
	st := s.waitStatus(t, 45*time.Second, "Healthy", func(st analyzer.RolloutStatus) {
		if n := len(trail); n == 0 || trail[n-1] != st.SetWeight {
			trail = append(trail, st.SetWeight)
		}
		if st.Aborted || st.Phase == analyzer.PhaseDegraded {
			b, _ := json.MarshalIndent(st, "", " ")
			t.Fatalf("good canary aborted:\n%s", b)
		}
	}, func(st analyzer.RolloutStatus) bool { return st.Phase == analyzer.PhaseHealthy })
	healthyAt := time.Now()

	if st.Step != stepCount || st.Steps != stepCount || st.SetWeight != 100 || st.ActualWeight != 100 {
		t.Fatalf("Healthy at step %d/%d, weight %d/%d; want %d/%d and 100/100",
			st.Step, st.Steps, st.SetWeight, st.ActualWeight, stepCount, stepCount)
	}
	if got := fmt.Sprint(trail); got != "[20 50 100]" && got != "[0 20 50 100]" {
		t.Fatalf("weights walked %v; want 20, 50, 100", trail)
	}
	run := inlineRun(t, st)
	mt := errorRatio(t, run)
	if run.Phase != analyzer.MeasurementSuccessful || mt.Successful != 2 || mt.Count != 2 ||
		mt.Failed+mt.Error+mt.Inconclusive != 0 {
		t.Fatalf("analysis run %s: metric %+v; want 2 successful measurements", run.Phase, mt)
	}
	for _, ms := range mt.Measurements {
		if ms.Phase == analyzer.MeasurementSuccessful && (len(ms.Values) != 1 || ms.Values[0] != 0) {
			t.Fatalf("error ratio measured %q of a canary that never fails", ms.Value)
		}
	}

	m.waitEach(t, 25, healthyAt, "25 RPCs of every client after Healthy")
	m.stopClients()
	m.checkNodes(t)

	// The clients followed each applied weight: between the moment every node had ACKed
	// it and the moment the next weight was set (less 200 ms at each end for a change to
	// reach every picker), the share of RPCs the canary answered is about the weight.
	for _, w := range []int{20, 50} {
		var from, to time.Time
		for _, h := range st.History {
			switch {
			case from.IsZero() && h.ActualWeight == w && h.SetWeight == w:
				from = h.Time
			case !from.IsZero() && to.IsZero() && h.SetWeight != w:
				to = h.Time
			}
		}
		if from.IsZero() || to.IsZero() {
			t.Fatalf("history has no complete period at weight %d: %+v", w, st.History)
		}
		from, to = from.Add(200*time.Millisecond), to.Add(-200*time.Millisecond)
		total := map[string]int{}
		for _, c := range m.clients {
			for k, v := range tally(c.between(from, to)) {
				total[k] += v
			}
		}
		n := total["stable"] + total["canary"]
		share := float64(total["canary"]) / float64(n)
		t.Logf("weight %d for %v: canary answered %.1f%% of %d RPCs", w,
			to.Sub(from).Round(time.Millisecond), 100*share, n)
		// Each RPC picks a cluster at random by weight: the share must be within four
		// binomial standard deviations of the weight, and there must be enough RPCs for
		// that bound to tell 20% from 0% and from 30% (±5 points), and 50% from 30% and 70%.
		want := float64(w) / 100
		tol := 4 * math.Sqrt(want*(1-want)/float64(n))
		if resolution := map[int]float64{20: 0.05, 50: 0.15}[w]; tol > resolution {
			t.Fatalf("weight %d: %d RPCs give a bound of ±%.3f, too few to tell it from ±%.2f", w, n, tol, resolution)
		}
		if math.Abs(share-want) > tol {
			t.Fatalf("weight %d: the canary answered %.3f of %d RPCs; want %.2f ± %.3f", w, share, n, want, tol)
		}
	}

	var failures []string
	for _, c := range m.clients {
		all := c.between(time.Time{}, time.Time{})
		for _, o := range all {
			if !o.ok {
				failures = append(failures, fmt.Sprintf("%s at %s (%s)", c.id, o.sent.Format(time.StampMilli), o.backend))
			}
		}
		last := lastSentTo(all, "stable")
		t.Logf("client %s: %v; last RPC to the stable sent %v before Healthy was reported",
			c.id, tally(all), healthyAt.Sub(last).Round(time.Millisecond))
		after := c.between(healthyAt, time.Time{})
		if an := tally(after); an["canary"] != len(after) {
			t.Fatalf("client %s: after Healthy, %v of %d RPCs; want all on the canary", c.id, an, len(after))
		}
	}
	if len(failures) > 0 {
		t.Fatalf("%d RPCs failed with a healthy stable and canary: %s", len(failures), strings.Join(failures, "; "))
	}
}
