package opse2e

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-mesh/sluice/analyzer"
	"github.com/sluice-mesh/sluice/internal/testenv"
)

// gateYAML is one Sluice with three rollouts, each on its own route of one Listener:
//
//   - dead: the canary Cluster has nothing listening; its step must wait at 0% and the
//     rollout abort once progressDeadlineSeconds (4) has passed.
//   - late: the canary comes up while the step waits; the step must then proceed.
//   - traffic: an analysis step with a built-in query and minRequests 20, with no
//     traffic at first: LowTraffic, waiting; once traffic flows, it passes.
func gateYAML(admin, listen, stateDir string, be map[string]string) string {
	var b strings.Builder
	cluster := func(name, addr string, checked bool) {
		fmt.Fprintf(&b, "apiVersion: sluice.dev/v1alpha1\nkind: Cluster\nmetadata: {name: %s}\nspec:\n  endpoints: [{address: %s}]\n", name, addr)
		if checked {
			b.WriteString("  healthCheck: {path: /health, interval: 500ms, timeout: 200ms}\n")
		}
		b.WriteString("---\n")
	}
	for _, c := range []string{"dead-a", "dead-b", "late-a", "late-b"} {
		cluster(c, be[c], true)
	}
	cluster("traffic-a", be["traffic-a"], false)
	cluster("traffic-b", be["traffic-b"], false)
	fmt.Fprintf(&b, `apiVersion: sluice.dev/v1alpha1
kind: Listener
metadata: {name: ingress}
spec:
  address: %s
  routes:
  - {name: dead, pathPrefix: /dead, cluster: dead-a}
  - {name: late, pathPrefix: /late, cluster: late-a}
  - {name: traffic, pathPrefix: /traffic, cluster: traffic-a}
---
apiVersion: sluice.dev/v1alpha1
kind: ControlPlane
metadata: {name: default}
spec:
  admin: {address: %s}
  stateDir: %s
  minRequests: 20
---
`, listen, admin, stateDir)
	rollout := func(name, deadline, steps string) {
		fmt.Fprintf(&b, `apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata: {name: %s}
spec:
  progressDeadlineSeconds: %s
  strategy:
    canary:
      stableService: %s-a
      canaryService: %s-b
      steps:
%s---
`, name, deadline, name, name, steps)
	}
	rollout("dead", "4", "      - setWeight: 50\n      - pause: {}\n")
	rollout("late", "600", "      - setWeight: 50\n      - pause: {}\n")
	rollout("traffic", "600", `      - setWeight: 50
      - analysis: {templates: [{templateName: canary-errors}]}
      - pause: {}
`)
	b.WriteString(`apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata: {name: canary-errors}
spec:
  metrics:
  - name: error-rate
    interval: 2s
    count: 1
    successCondition: result[0] < 0.5
    provider:
      prometheus:
        query: sum(rate(http_errors_total{cluster="traffic-b"}[10s])) / sum(rate(http_requests_total{cluster="traffic-b"}[10s]))
`)
	return b.String()
}

func statusOf(t *testing.T, admin, name string) analyzer.RolloutStatus {
	t.Helper()
	var st analyzer.RolloutStatus
	resp, err := http.Get("http://" + admin + "/api/v1/rollouts/" + name)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", name, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	return st
}

// clients send GET requests through the router to a path, one after another, until
// stopped, and count every answer that is not a 200 (or no answer at all).
type clients struct {
	stop    chan struct{}
	wg      sync.WaitGroup
	mu      sync.Mutex
	ok      int
	failed  []string
	backend map[string]int
}

func startClients(url string, n int) *clients {
	c := &clients{stop: make(chan struct{}), backend: map[string]int{}}
	hc := &http.Client{Timeout: 10 * time.Second}
	for range n {
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			for {
				select {
				case <-c.stop:
					return
				case <-time.After(10 * time.Millisecond):
				}
				resp, err := hc.Get(url)
				c.mu.Lock()
				switch {
				case err != nil:
					c.failed = append(c.failed, err.Error())
				case resp.StatusCode != http.StatusOK:
					c.failed = append(c.failed, resp.Status)
				default:
					c.ok++
					c.backend[resp.Header.Get("X-Backend")]++
				}
				c.mu.Unlock()
				if resp != nil {
					resp.Body.Close()
				}
			}
		}()
	}
	return c
}

// end stops the clients and returns how many requests succeeded, by backend, and the failures.
func (c *clients) end() (int, map[string]int, []string) {
	close(c.stop)
	c.wg.Wait()
	return c.ok, c.backend, c.failed
}

func (c *clients) served(backend string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.backend[backend]
}

// TestNeverShiftsTrafficToADeadCanary runs one `sluice serve` with the three rollouts of
// gateYAML and real HTTP backends, with clients sending requests through the router the
// whole time.
func TestNeverShiftsTrafficToADeadCanary(t *testing.T) {
	be := map[string]string{}
	for _, n := range []string{"dead-a", "late-a", "traffic-a", "traffic-b"} {
		be[n] = backend(t, n)
	}
	be["dead-b"], be["late-b"] = testenv.FreeAddr(t), testenv.FreeAddr(t) // nothing listens there (yet)
	admin, listen := testenv.FreeAddr(t), testenv.FreeAddr(t)
	cfg := filepath.Join(t.TempDir(), "gate.yaml")
	write(t, cfg, gateYAML(admin, listen, filepath.Join(t.TempDir(), "state"), be))
	started := time.Now()
	p := serve(t, "sluice serve", cfg)
	testenv.WaitFor(t, 60*time.Second, "sluice serving", func() bool {
		if p.Exited() {
			t.Fatalf("sluice exited:\n%s", p.Output())
		}
		resp, err := http.Get("http://" + admin + "/readyz")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil && resp.StatusCode == http.StatusOK
	})
	deadClients := startClients("http://"+listen+"/dead/", 2)
	lateClients := startClients("http://"+listen+"/late/", 2)
	defer func() {
		if t.Failed() {
			t.Logf("sluice output:\n%s", tail(p.Output()))
		}
	}()

	t.Run("a canary with nothing listening: weight held, then abort at the deadline", func(t *testing.T) {
		var waiting analyzer.RolloutStatus
		testenv.WaitFor(t, 30*time.Second, "dead waiting for its canary", func() bool {
			waiting = statusOf(t, admin, "dead")
			if waiting.SetWeight != 0 {
				t.Fatalf("the dead canary got weight: %+v", waiting)
			}
			return strings.HasPrefix(waiting.Message, "waiting for healthy canary endpoints: 0/1 (router)")
		})
		if waiting.Phase != analyzer.PhaseProgressing || waiting.SetWeight != 0 || waiting.ActualWeight != 0 ||
			waiting.WaitDeadline == nil || !strings.HasPrefix(waiting.Waiting, "waiting for healthy canary endpoints: 0/1 (router)") {
			t.Errorf("while waiting: %+v", waiting)
		}
		if c := waiting.Clusters; len(c) != 2 || c[1].Name != "dead-b" || c[1].Planes.String() != "0/1 (router)" {
			t.Errorf("clusters while waiting: %+v", c)
		}
		var st analyzer.RolloutStatus
		testenv.WaitFor(t, 60*time.Second, "dead aborted", func() bool {
			st = statusOf(t, admin, "dead")
			if st.SetWeight != 0 || st.ActualWeight != 0 {
				t.Fatalf("the dead canary got weight: %+v", st)
			}
			return st.Aborted
		})
		if st.Phase != analyzer.PhaseDegraded || st.AbortCause != analyzer.AbortByProgressDeadline ||
			!strings.Contains(st.Message, "aborted: progressDeadlineSeconds (4) exceeded: canary dead-b had no healthy endpoint for 4s; waiting for healthy canary endpoints: 0/1 (router)") {
			t.Errorf("after the deadline: %+v", st)
		}
		// The abort came at the deadline: 4 s after the wait began (the events say when).
		var began, aborted time.Time
		for _, e := range st.Events {
			switch e.Type {
			case analyzer.EventWaitingForHealth:
				began = e.Time
			case analyzer.EventAborted:
				aborted = e.Time
			}
		}
		if waited := aborted.Sub(began); began.IsZero() || waited < 4*time.Second || waited > 14*time.Second {
			t.Errorf("waited %s between the waitingForHealth event (%s) and the abort (%s), want 4 s (+ a loaded machine's delay)", waited, began, aborted)
		}
		t.Logf("dead canary: waiting message %q; aborted %s after the wait began, %s after start", waiting.Message,
			aborted.Sub(began).Round(time.Millisecond), aborted.Sub(started).Round(time.Millisecond))
		ok, by, failed := deadClients.end()
		if len(failed) > 0 || ok == 0 || by["dead-a"] != ok {
			t.Errorf("clients of the dead canary's route: %d ok (%v), %d failed: %v", ok, by, len(failed), failed[:min(len(failed), 5)])
		}
		t.Logf("%d requests through the router while the dead canary's step waited and aborted, none failed", ok)
	})

	t.Run("a canary that comes up late: the step proceeds", func(t *testing.T) {
		testenv.WaitFor(t, 30*time.Second, "late waiting for its canary", func() bool {
			return strings.HasPrefix(statusOf(t, admin, "late").Message, "waiting for healthy canary endpoints: 0/1 (router)")
		})
		ln, err := net.Listen("tcp", be["late-b"])
		if err != nil {
			t.Fatalf("the late canary's port was taken meanwhile: %v", err)
		}
		up := time.Now()
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("X-Backend", "late-b")
			fmt.Fprintln(w, "late-b")
		})}
		go srv.Serve(ln)
		defer srv.Close()
		var st analyzer.RolloutStatus
		testenv.WaitFor(t, 60*time.Second, "late at 50%", func() bool {
			st = statusOf(t, admin, "late")
			return st.Phase == analyzer.PhasePaused && st.ActualWeight == 50
		})
		t.Logf("late canary: weight 50 applied %s after it started listening", time.Since(up).Round(time.Millisecond))
		if st.Aborted || st.Clusters[1].Planes.String() != "1/1 (router)" {
			t.Errorf("%+v", st)
		}
		testenv.WaitFor(t, 30*time.Second, "requests reaching the late canary", func() bool { return lateClients.served("late-b") >= 10 })
		ok, by, failed := lateClients.end()
		if len(failed) > 0 {
			t.Errorf("clients of the late canary's route: %d ok (%v), %d failed: %v", ok, by, len(failed), failed[:min(len(failed), 5)])
		}
		t.Logf("%d requests through the router (%v), none failed", ok, by)
	})

	t.Run("traffic starting late: LowTraffic, then the analysis passes", func(t *testing.T) {
		var st analyzer.RolloutStatus
		testenv.WaitFor(t, 60*time.Second, "a LowTraffic measurement", func() bool {
			st = statusOf(t, admin, "traffic")
			for _, run := range st.AnalysisRuns {
				for _, m := range run.Metrics {
					for _, x := range m.Measurements {
						if x.Phase == analyzer.MeasurementLowTraffic {
							return true
						}
					}
				}
			}
			return false
		})
		ms := st.AnalysisRuns[0].Metrics[0]
		last := ms.Measurements[len(ms.Measurements)-1]
		if st.Phase != analyzer.PhaseProgressing || st.Step != 1 || ms.Count != 0 ||
			!strings.Contains(last.Message, "served 0 requests in the last 10s, fewer than the 20 needed; waiting") ||
			!strings.Contains(st.Waiting, "error-rate: LowTraffic (low traffic:") {
			t.Fatalf("before any traffic: %+v\nlast measurement %+v", st, last)
		}
		c := startClients("http://"+listen+"/traffic/", 4)
		testenv.WaitFor(t, 90*time.Second, "traffic past its analysis", func() bool {
			st = statusOf(t, admin, "traffic")
			if st.Aborted {
				t.Fatalf("aborted: %+v", st)
			}
			return st.Phase == analyzer.PhasePaused && st.Step == 2
		})
		ok, by, failed := c.end()
		ms = st.AnalysisRuns[0].Metrics[0]
		var phases []string
		for _, x := range ms.Measurements {
			phases = append(phases, string(x.Phase))
		}
		if ms.Phase != analyzer.MeasurementSuccessful || phases[0] != "LowTraffic" || phases[len(phases)-1] != "Successful" || len(failed) > 0 {
			t.Errorf("measurements %v; clients %d ok %v, failed %v", phases, ok, by, failed)
		}
		t.Logf("traffic: measurements %v", phases)
	})
}
