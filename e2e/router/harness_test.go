// Package routere2e holds the no-mesh end-to-end tests of rollouts behind Sluice's own
// router (issue 5's and issue 6's "Done when"), with real processes on 127.0.0.1: the
// sluice binary built once in TestMain runs `sluice serve` (router, embedded analysis,
// controller, admin API) and `sluice demo-backend` for the stable and canary versions;
// Debian's prometheus scrapes sluice's admin /metrics where a scenario asks for it. The
// test process drives steady load through the router and reads the admin API.
//
// Every scenario derives its configuration from examples/sluice.yaml (exampleConfig): the
// same Rollout (10% → pause → 25% → pause → analysis → 50% → pause) and the same
// AnalysisTemplate (error-rate and p95-latency over the router's series), rewriting only
// addresses, the stateDir, the prometheus-address argument and the time scale (the
// judge scenario alone swaps the template's metrics for one sluice/judge metric).
package routere2e

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-mesh/sluice/analyzer"
	"github.com/sluice-mesh/sluice/internal/testenv"
)

// sluiceBin is the sluice binary built by TestMain.
var sluiceBin string

// repoRoot is the module root.
var repoRoot string

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	flag.Parse()
	if testing.Short() {
		return m.Run() // every scenario skips itself (skipShort)
	}
	// The scenarios mostly wait on pauses and intervals in child processes: run them all
	// at once unless -test.parallel was given (its default, GOMAXPROCS, is 2 here).
	explicit := false
	flag.Visit(func(f *flag.Flag) { explicit = explicit || f.Name == "test.parallel" })
	if !explicit {
		_ = flag.Set("test.parallel", "8")
	}
	var err error
	if repoRoot, err = testenv.ModuleRoot(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	dir, err := os.MkdirTemp("", "sluice-e2e-router-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	if sluiceBin, err = testenv.BuildSluice(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

// skipShort skips a scenario under -short: each starts several processes and runs for
// 10–50 s.
func skipShort(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: real-process rollout scenario")
	}
}

// ---------------------------------------------------------------------------------------
// Processes

// proc is a child process of the test (testenv.Process).
type proc = testenv.Process

// startProc runs the sluice binary with args; see testenv.StartProcess.
func startProc(t *testing.T, name string, args ...string) *proc {
	t.Helper()
	return testenv.StartProcess(t, name, sluiceBin, args...)
}

var backendLine = regexp.MustCompile(`demo-backend \S+ http (\S+)`)

// startBackend runs `sluice demo-backend` on a free port and returns its address.
func startBackend(t *testing.T, name string, errorRate float64) string {
	t.Helper()
	p := startProc(t, "demo-backend "+name, "demo-backend", "--listen", "127.0.0.1:0", "--name", name,
		"--error-rate", fmt.Sprint(errorRate), "--latency", "5ms", "--log-level", "warn")
	var addr string
	testenv.WaitFor(t, 20*time.Second, "demo-backend "+name+" listening", func() bool {
		if m := backendLine.FindStringSubmatch(p.Output()); m != nil {
			addr = m[1]
			return true
		}
		if p.Exited() {
			t.Fatalf("demo-backend %s exited:\n%s", name, p.Output())
		}
		return false
	})
	return addr
}

// serve is a running `sluice serve`.
type serve struct {
	*proc
	admin  string // admin API host:port
	listen string // router listener host:port
}

// startServe runs `sluice serve -f cfgPath` and waits until the admin API answers for the
// rollout and the router is ready.
func startServe(t *testing.T, c *cluster, cfgPath string) *serve {
	t.Helper()
	p := startProc(t, "sluice serve", "serve", "-f", cfgPath, "--log-format", "json")
	s := &serve{proc: p, admin: c.admin, listen: c.listen}
	testenv.WaitFor(t, 30*time.Second, "sluice serve ready", func() bool {
		if p.Exited() {
			t.Fatalf("sluice serve exited:\n%s", p.Output())
		}
		if strings.Contains(p.Output(), "address already in use") {
			t.Fatalf("a port picked for this test was taken meanwhile:\n%s", p.Output())
		}
		resp, err := http.Get("http://" + s.admin + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return s
}

// status reads GET /api/v1/rollouts/backend-api; ok is false when the API did not answer.
func (s *serve) status() (analyzer.RolloutStatus, bool) {
	var st analyzer.RolloutStatus
	resp, err := http.Get("http://" + s.admin + "/api/v1/rollouts/" + rolloutName)
	if err != nil {
		return st, false
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return st, false
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return st, false
	}
	return st, true
}

// waitStatus polls the rollout's status until cond holds, calling each (when set) on
// every status read, and returns the status that satisfied cond.
func (s *serve) waitStatus(t *testing.T, within time.Duration, what string, each func(analyzer.RolloutStatus), cond func(analyzer.RolloutStatus) bool) analyzer.RolloutStatus {
	t.Helper()
	var last analyzer.RolloutStatus
	deadline := time.Now().Add(within)
	for {
		if st, ok := s.status(); ok {
			last = st
			if each != nil {
				each(st)
			}
			if cond(st) {
				return st
			}
		}
		if s.Exited() {
			t.Fatalf("sluice serve exited while waiting for %s", what)
		}
		if time.Now().After(deadline) {
			b, _ := json.MarshalIndent(last, "", " ")
			t.Fatalf("timed out after %s waiting for %s; last status:\n%s", within, what, b)
		}
		time.Sleep(50 * time.Millisecond) // poll interval of the admin API
	}
}

// metrics returns the text of sluice's admin /metrics.
func (s *serve) metrics(t *testing.T) string {
	t.Helper()
	resp, err := http.Get("http://" + s.admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// sumMetric adds every sample of family name whose line contains all of the given
// label pairs (written as in the exposition format, e.g. `cluster="x"`).
func sumMetric(text, name string, labels ...string) float64 {
	var sum float64
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		ok := true
		for _, l := range labels {
			if !strings.Contains(line, l) {
				ok = false
				break
			}
		}
		if !ok {
			continue
		}
		var v float64
		if _, err := fmt.Sscan(line[strings.LastIndex(line, " ")+1:], &v); err == nil {
			sum += v
		}
	}
	return sum
}

// ---------------------------------------------------------------------------------------
// Configuration derived from examples/sluice.yaml

const (
	rolloutName   = "backend-api"
	stableCluster = "backend-api-stable"
	canaryCluster = "backend-api-canary"
	// Step indexes of the example's Rollout.
	stepPause25  = 3 // pause after setWeight 25
	stepAnalysis = 4
	stepCount    = 7
)

// timing compresses the example's durations.
type timing struct {
	Pause     time.Duration // the two `pause: {duration: 60s}`
	LongPause time.Duration // `pause: {duration: 120s}`
	Interval  time.Duration // metric `interval: 30s`
	Window    string        // PromQL range replacing [1m], e.g. "6s"
}

// fast is the time scale the scenarios use: pauses 60s and 120s → 4s, metric interval
// 30s → 2s, PromQL range [1m] → [8s]. The range is four intervals (the example's is two)
// so that the first measurement sees enough canary requests for the 1% threshold to
// tell a 5% canary from a healthy one: at the failing scenarios' 250 rps the window at
// weights 10 then 25 holds about 350 canary requests (a 5% canary measures ≤ 1% with
// probability about 1e-5 when every request is in the data), and the pause at 25 fills
// half of it.
var fast = timing{Pause: 4 * time.Second, LongPause: 4 * time.Second, Interval: 2 * time.Second, Window: "8s"}

// cluster is one scenario's addresses and files.
type cluster struct {
	dir            string
	admin, listen  string
	stable, canary string // backend addresses
	promAddr       string // "" : embedded evaluation
	stateDir       string
}

var (
	addrMu    sync.Mutex
	addrsUsed = map[string]bool{}
)

// freeAddr is testenv.FreeAddr that never hands out the same address twice in this
// process: parallel scenarios must not be given each other's ports.
func freeAddr(t *testing.T) string {
	t.Helper()
	addrMu.Lock()
	defer addrMu.Unlock()
	for {
		a := testenv.FreeAddr(t)
		if !addrsUsed[a] {
			addrsUsed[a] = true
			return a
		}
	}
}

func newCluster(t *testing.T, stable, canary string) *cluster {
	dir := t.TempDir()
	return &cluster{dir: dir, admin: freeAddr(t), listen: freeAddr(t),
		stable: stable, canary: canary, stateDir: filepath.Join(dir, "state")}
}

// replaceN replaces old by new in s and fails unless it occurred exactly n times, so a
// change to the example is noticed here instead of silently testing something else.
func replaceN(t *testing.T, s, old, new string, n int) string {
	t.Helper()
	if got := strings.Count(s, old); got != n {
		t.Fatalf("examples/sluice.yaml: %q occurs %d times, want %d; update exampleConfig", old, got, n)
	}
	return strings.ReplaceAll(s, old, new)
}

// exampleConfig returns examples/sluice.yaml with only addresses, the stateDir, the
// prometheus-address argument and the time scale rewritten.
func exampleConfig(t *testing.T, c *cluster, tm timing) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, "examples", "sluice.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	s = replaceN(t, s, "address: 127.0.0.1:9900", "address: "+c.admin, 1)
	s = replaceN(t, s, "stateDir: .sluice", "stateDir: "+c.stateDir, 1)
	s = replaceN(t, s, "address: 127.0.0.1:9001", "address: "+c.stable, 1)
	s = replaceN(t, s, "address: 127.0.0.1:9002", "address: "+c.canary, 1)
	s = replaceN(t, s, "address: 127.0.0.1:8080", "address: "+c.listen, 1)
	// Health checks every 5s and a 10s warm-up, in seconds: 1s each.
	s = replaceN(t, s, "interval: 5s", "interval: 1s", 2)
	s = replaceN(t, s, "warmup: 10s", "warmup: 1s", 2)
	s = replaceN(t, s, "pause: {duration: 60s}", fmt.Sprintf("pause: {duration: %s}", tm.Pause), 2)
	s = replaceN(t, s, "pause: {duration: 120s}", fmt.Sprintf("pause: {duration: %s}", tm.LongPause), 1)
	s = replaceN(t, s, "interval: 30s", fmt.Sprintf("interval: %s", tm.Interval), 2)
	s = replaceN(t, s, "[1m]", "["+tm.Window+"]", 3)
	prom := ""
	if c.promAddr != "" {
		prom = "http://" + c.promAddr
	}
	s = replaceN(t, s, `value: ""   `, fmt.Sprintf("value: %q   ", prom), 1)
	return s
}

// writeConfig writes text to the scenario's config file and returns its path.
func (c *cluster) writeConfig(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(c.dir, "sluice.yaml")
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// ---------------------------------------------------------------------------------------
// Load

// result is one request of the load generator.
type result struct {
	sent    time.Time
	backend string // X-Sluice-Backend of the answer; "" when the request failed
	status  int
}

// load sends requests through the router at a fixed rate from a few goroutines until
// stopped (or the test ends).
type load struct {
	mu      sync.Mutex
	results []result
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

// startLoad sends rps requests a second to http://addr/ from workers goroutines, each
// request carrying header (when set).
func startLoad(t *testing.T, addr string, rps, workers int, header http.Header) *load {
	ctx, cancel := context.WithCancel(context.Background())
	l := &load{cancel: cancel}
	// A generous timeout: an answer late on a loaded machine is still an answer (a
	// request without one counts as failed).
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		MaxIdleConnsPerHost: workers, DisableCompression: true}}
	every := time.Duration(workers) * time.Second / time.Duration(rps)
	for i := 0; i < workers; i++ {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			tick := time.NewTicker(every)
			defer tick.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/api/items", nil)
				for k, v := range header {
					req.Header[k] = v
				}
				r := result{sent: time.Now()}
				resp, err := client.Do(req)
				if err != nil && ctx.Err() != nil {
					return // cut short by stop: not an answer
				}
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					r.backend, r.status = resp.Header.Get("X-Sluice-Backend"), resp.StatusCode
				}
				l.mu.Lock()
				l.results = append(l.results, r)
				l.mu.Unlock()
			}
		}()
	}
	t.Cleanup(func() { l.stop(); client.CloseIdleConnections() })
	return l
}

func (l *load) stop() {
	l.cancel()
	l.wg.Wait()
}

// since returns the results of requests sent at or after from.
func (l *load) since(from time.Time) []result {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []result
	for _, r := range l.results {
		if !r.sent.Before(from) {
			out = append(out, r)
		}
	}
	return out
}

// count returns how many of rs were answered by backend.
func count(rs []result, backend string) int {
	n := 0
	for _, r := range rs {
		if r.backend == backend {
			n++
		}
	}
	return n
}

// metricStatus returns the named metric of run, failing the test when it is missing.
func metricStatus(t *testing.T, run analyzer.AnalysisRunStatus, name string) analyzer.MetricStatus {
	t.Helper()
	for _, m := range run.Metrics {
		if m.Name == name {
			return m
		}
	}
	t.Fatalf("analysis run %s has no metric %s: %+v", run.Name, name, run)
	return analyzer.MetricStatus{}
}

// inlineRun returns the inline analysis run of the analysis step.
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
