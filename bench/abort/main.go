// Command abort measures how fast a failing canary loses its traffic, with real parts: a
// `sluice serve` process built from this repository, its router in front of two
// `sluice demo-backend` processes (a healthy stable, a canary failing a large share of
// its requests), the embedded analysis measuring the canary's error ratio every
// -interval, and steady load sent through the router by this program.
//
// Each run starts a fresh `sluice serve` (its own stateDir, admin API and listener on
// ephemeral ports, read back from its log) whose Rollout sets the canary to 50% and then
// analyses it; the first measurement that sees the errors fails and aborts the rollout.
// From that measurement's end (its finishedAt in the status) the run times:
//
//   - the zero weight applied, as Sluice reports it (status abortLatencySeconds);
//   - the last request that reached the canary: the send time of the last answer that
//     carried X-Sluice-Backend: canary, as the client saw it;
//   - the abort visible in GET /api/v1/rollouts/NAME (aborted, actualWeight 0), polled
//     every -poll.
//
// Run it as make bench-abort does:
//
//	go run ./bench/abort -runs 20 -interval 1s -rps 400 -readme bench/README.md
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/sluice-mesh/sluice/analyzer"
	"github.com/sluice-mesh/sluice/bench/internal/readme"
	"github.com/sluice-mesh/sluice/internal/demobackend"
	"github.com/sluice-mesh/sluice/internal/testenv"
)

// rolloutName is the Rollout of configTemplate.
const rolloutName = "bench-api"

// configTemplate is each run's configuration: ${...} are filled in by run. Health checks
// every second with no warm-up, so that the canary takes traffic at once; the canary's
// passive ejection is off, so that its errors reach the analysis instead of ejecting it.
const configTemplate = `apiVersion: sluice.dev/v1alpha1
kind: Cluster
metadata: {name: bench-stable}
spec:
  endpoints: [{address: ${STABLE}}]
  healthCheck: {interval: 1s}
  warmup: 0s
---
apiVersion: sluice.dev/v1alpha1
kind: Cluster
metadata: {name: bench-canary}
spec:
  endpoints: [{address: ${CANARY}}]
  healthCheck: {interval: 1s}
  warmup: 0s
  outlierDetection: {consecutiveFailures: 0}
---
apiVersion: sluice.dev/v1alpha1
kind: Listener
metadata: {name: bench-ingress}
spec:
  address: 127.0.0.1:0
  routes: [{hosts: ["*"], pathPrefix: /, cluster: bench-stable}]
---
apiVersion: sluice.dev/v1alpha1
kind: ControlPlane
metadata: {name: default}
spec:
  admin: {address: 127.0.0.1:0}
  stateDir: ${STATE}
---
apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata: {name: bench-api}
spec:
  strategy:
    canary:
      stableService: bench-stable
      canaryService: bench-canary
      trafficRouting: {nginx: {stableIngress: bench-ingress}}
      steps:
      - setWeight: 50
      - analysis: {templates: [{templateName: canary-errors}]}
---
apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata: {name: canary-errors}
spec:
  metrics:
  - name: error-rate
    interval: ${INTERVAL}
    count: 100                  # never reached: the first measurement that counts fails
    failureLimit: 0
    successCondition: result[0] < 0.05
    provider:
      prometheus:
        query: |
          sum(rate(http_errors_total{cluster="bench-canary"}[${WINDOW}]))
          /
          sum(rate(http_requests_total{cluster="bench-canary"}[${WINDOW}]))
`

// canaryWeight is the weight the Rollout gives the canary before the analysis.
const canaryWeight = 50

func main() {
	runs := flag.Int("runs", 20, "failing rollouts, each with a fresh sluice serve")
	interval := flag.Duration("interval", time.Second, "the analysis interval (the window is twice it, at least 2s)")
	rps := flag.Int("rps", 400, "requests per second sent through the router")
	errorRate := flag.Float64("canary-errors", 0.3, "share of the canary's requests answered 500")
	poll := flag.Duration("poll", 10*time.Millisecond, "how often the rollout's status is read")
	readmePath := flag.String("readme", "", "write the results into this file between <!-- abort:begin --> and <!-- abort:end -->")
	flag.Parse()
	if *runs < 1 || *rps < 10 || *interval <= 0 || *poll <= 0 || *errorRate <= 0.05 || *errorRate > 1 {
		log.Fatal("want -runs ≥ 1, -rps ≥ 10, -interval and -poll > 0, and -canary-errors in (0.05, 1] (the template fails the canary from 5%)")
	}
	b := &bench{interval: *interval, rps: *rps, poll: *poll, errorRate: *errorRate}
	samples, err := b.all(*runs)
	if err != nil {
		log.Fatal(err)
	}
	text := render(samples, b)
	fmt.Print("\n" + text)
	if *readmePath != "" {
		if err := readme.WriteSection(*readmePath, "abort", text); err != nil {
			log.Fatal(err)
		}
		fmt.Println("written to", *readmePath)
	}
}

// all builds sluice once, starts the two backends and plays runs failing rollouts.
func (b *bench) all(runs int) ([]sample, error) {
	var err error
	if b.dir, err = os.MkdirTemp("", "sluice-bench-abort-"); err != nil {
		return nil, err
	}
	defer os.RemoveAll(b.dir)
	if b.sluice, err = testenv.BuildSluice(b.dir); err != nil {
		return nil, err
	}
	stable, err := b.backend("stable", 0, &b.stable)
	if err != nil {
		return nil, err
	}
	defer stable.stop()
	canary, err := b.backend("canary", b.errorRate, &b.canary)
	if err != nil {
		return nil, err
	}
	defer canary.stop()

	b.loadBefore = loadAvg()
	var samples []sample
	for i := range runs {
		s, err := b.run(i)
		if err != nil {
			return nil, fmt.Errorf("run %d: %w", i+1, err)
		}
		fmt.Printf("run %2d: reported %v, last canary request %v, visible in status %v (%d canary answers after it; %.0f requests/s answered)\n",
			i+1, s.reported.Round(100*time.Microsecond), s.client.Round(100*time.Microsecond),
			s.visible.Round(100*time.Microsecond), s.lateAfterVisible, s.rps)
		samples = append(samples, s)
	}
	b.loadAfter = loadAvg()
	return samples, nil
}

// bench holds what every run shares.
type bench struct {
	interval, poll        time.Duration
	rps                   int
	errorRate             float64 // the canary's
	dir, sluice           string  // work directory, the binary built there
	stable, canary        string  // backend addresses
	loadBefore, loadAfter string  // 1-minute load averages around the runs
}

// sample is one run's figures, each counted from the failing measurement's end.
type sample struct {
	reported time.Duration // status abortLatencySeconds: to the zero weight applied
	client   time.Duration // to the send time of the last request the canary answered
	visible  time.Duration // to the first status read showing the abort at weight 0
	// lateAfterVisible counts canary answers to requests sent after the abort was
	// visible in the status (anything but 0 is a bug).
	lateAfterVisible int
	requests         int     // requests answered in the run
	rps              float64 // answered per second
}

// window is the PromQL range of the analysis: two intervals, at least 2 s (the embedded
// store gathers every second and a rate needs two samples).
func (b *bench) window() time.Duration { return max(2*b.interval, 2*time.Second) }

// proc is a process this program started, its output going to a log file.
type proc struct {
	cmd  *exec.Cmd
	log  string        // path of its output
	done chan struct{} // closed when it has ended
}

// start runs the sluice binary with args, its output going to DIR/name.log.
func (b *bench) start(name string, args ...string) (*proc, error) {
	p := &proc{cmd: exec.Command(b.sluice, args...), log: filepath.Join(b.dir, name+".log"), done: make(chan struct{})}
	f, err := os.Create(p.log)
	if err != nil {
		return nil, err
	}
	p.cmd.Stdout, p.cmd.Stderr = f, f
	if err := p.cmd.Start(); err != nil {
		f.Close()
		return nil, err
	}
	go func() { _ = p.cmd.Wait(); f.Close(); close(p.done) }()
	return p, nil
}

// stop kills the process and waits until it is gone.
func (p *proc) stop() {
	_ = p.cmd.Process.Kill()
	<-p.done
}

// waitLog re-reads the process's output until done accepts it; it fails when the
// process ends first or within has passed.
func (p *proc) waitLog(within time.Duration, what string, done func(out string) bool) error {
	deadline := time.Now().Add(within)
	for {
		out, _ := os.ReadFile(p.log)
		if done(string(out)) {
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("exited before %s:\n%s", what, out)
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no %s after %s; output:\n%s", what, within, out)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

var backendLine = regexp.MustCompile(`demo-backend \S+ http (\S+)`)

// backend runs `sluice demo-backend` on an ephemeral port and stores its address in *addr.
func (b *bench) backend(name string, errorRate float64, addr *string) (*proc, error) {
	p, err := b.start("backend-"+name, "demo-backend", "--listen", "127.0.0.1:0", "--name", name,
		"--error-rate", fmt.Sprint(errorRate), "--latency", "5ms", "--log-level", "warn")
	if err != nil {
		return nil, err
	}
	err = p.waitLog(20*time.Second, "demo-backend "+name+" listening", func(out string) bool {
		if m := backendLine.FindStringSubmatch(out); m != nil {
			*addr = m[1]
		}
		return *addr != ""
	})
	if err != nil {
		p.stop()
		return nil, err
	}
	return p, nil
}

// boundAddrs returns the admin API's and the router listener's bound addresses from the
// JSON log of `sluice serve` ("" until it has logged them).
func boundAddrs(jsonLog string) (admin, listen string) {
	for _, line := range strings.Split(jsonLog, "\n") {
		var e struct{ Msg, Address string }
		if json.Unmarshal([]byte(line), &e) != nil {
			continue
		}
		switch e.Msg {
		case "admin API listening":
			admin = e.Address
		case "listener bound":
			listen = e.Address
		}
	}
	return admin, listen
}

// run plays one failing rollout with a fresh `sluice serve` and returns its figures.
func (b *bench) run(i int) (sample, error) {
	name := fmt.Sprintf("serve-%d", i+1)
	cfg := strings.NewReplacer("${STABLE}", b.stable, "${CANARY}", b.canary,
		"${STATE}", filepath.Join(b.dir, name+"-state"), "${INTERVAL}", b.interval.String(),
		"${WINDOW}", b.window().String()).Replace(configTemplate)
	cfgPath := filepath.Join(b.dir, name+".yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		return sample{}, err
	}
	serve, err := b.start(name, "serve", "-f", cfgPath, "--log-format", "json")
	if err != nil {
		return sample{}, err
	}
	defer serve.stop()
	var admin, listen string
	if err := serve.waitLog(30*time.Second, "bound admin and listener addresses", func(out string) bool {
		admin, listen = boundAddrs(out)
		return admin != "" && listen != ""
	}); err != nil {
		return sample{}, err
	}

	loadFrom := time.Now()
	ld := startLoad(listen, b.rps, 8)
	defer ld.stop()
	st, visibleAt, err := b.waitAbort(admin, 60*time.Second)
	if err != nil {
		out, _ := os.ReadFile(serve.log)
		return sample{}, fmt.Errorf("%v\nsluice serve output:\n%s", err, out)
	}
	// Keep the load on for a second more: a request the canary still answered then
	// would show in the figures.
	time.Sleep(time.Second)
	ld.stop()
	loadFor := time.Since(loadFrom)

	failedAt, ok := failingMeasurement(st)
	if !ok || st.AbortCause != analyzer.AbortByAnalysis || st.AbortLatencySeconds == nil {
		return sample{}, fmt.Errorf("aborted without a failing measurement and its latency: cause %q, %s", st.AbortCause, st.Message)
	}
	s := sample{
		reported: time.Duration(*st.AbortLatencySeconds * float64(time.Second)),
		visible:  visibleAt.Sub(failedAt),
	}
	last, late, n := ld.canaryAfter(visibleAt)
	if last.IsZero() {
		return sample{}, errors.New("the canary answered no request")
	}
	s.client, s.lateAfterVisible, s.requests = last.Sub(failedAt), late, n
	s.rps = float64(n) / loadFor.Seconds()
	return s, nil
}

// waitAbort reads the rollout's status every b.poll until it shows the abort applied
// (aborted, actualWeight 0), and returns that status and when its answer arrived.
func (b *bench) waitAbort(admin string, within time.Duration) (analyzer.RolloutStatus, time.Time, error) {
	client := &http.Client{Timeout: 5 * time.Second}
	deadline := time.Now().Add(within)
	var st analyzer.RolloutStatus
	for time.Now().Before(deadline) {
		st = analyzer.RolloutStatus{}
		resp, err := client.Get("http://" + admin + "/api/v1/rollouts/" + rolloutName)
		if err == nil {
			err = json.NewDecoder(resp.Body).Decode(&st)
			resp.Body.Close()
		}
		seen := time.Now()
		if err == nil && st.Aborted && st.ActualWeight == 0 {
			return st, seen, nil
		}
		if st.Phase == analyzer.PhaseHealthy || st.Phase == analyzer.PhasePaused {
			return st, seen, fmt.Errorf("the failing canary was not aborted: %s, %s", st.Phase, st.Message)
		}
		time.Sleep(b.poll)
	}
	return st, time.Time{}, fmt.Errorf("no abort within %s; last status: %s, %s", within, st.Phase, st.Message)
}

// failingMeasurement returns the end of the latest Failed measurement in st's analysis.
func failingMeasurement(st analyzer.RolloutStatus) (time.Time, bool) {
	var at time.Time
	for _, run := range st.AnalysisRuns {
		for _, m := range run.Metrics {
			for _, ms := range m.Measurements {
				if ms.Phase == analyzer.MeasurementFailed && ms.FinishedAt.After(at) {
					at = ms.FinishedAt
				}
			}
		}
	}
	return at, !at.IsZero()
}

// load sends requests through the router at a steady rate and records which backend
// answered each.
type load struct {
	mu      sync.Mutex
	answers []answer
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

// answer is one request of the load: when it was sent and whether the canary answered.
type answer struct {
	sent   time.Time
	canary bool
}

// startLoad sends rps GET requests a second to http://addr/ from workers goroutines,
// spread evenly in time (the workers' tickers are staggered).
func startLoad(addr string, rps, workers int) *load {
	ctx, cancel := context.WithCancel(context.Background())
	l := &load{cancel: cancel}
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: workers}}
	every := time.Duration(workers) * time.Second / time.Duration(rps)
	for i := range workers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Duration(i) * every / time.Duration(workers)):
			}
			tick := time.NewTicker(every)
			defer tick.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/api/items", nil)
				sent := time.Now()
				resp, err := client.Do(req)
				if err != nil {
					continue // refused before the router was ready, or cut short by stop
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				l.mu.Lock()
				l.answers = append(l.answers, answer{sent: sent, canary: resp.Header.Get(demobackend.HeaderBackend) == "canary"})
				l.mu.Unlock()
			}
		}()
	}
	return l
}

// stop ends the load and waits for its requests in flight; safe to call twice.
func (l *load) stop() {
	l.cancel()
	l.wg.Wait()
}

// canaryAfter returns the send time of the last request the canary answered, how many
// canary answers were to requests sent after t, and how many requests were answered.
func (l *load) canaryAfter(t time.Time) (last time.Time, after, n int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, a := range l.answers {
		if !a.canary {
			continue
		}
		if a.sent.After(last) {
			last = a.sent
		}
		if a.sent.After(t) {
			after++
		}
	}
	return last, after, len(l.answers)
}

// stats are the median, 95th percentile and maximum of a set of durations.
type stats struct{ median, p95, max time.Duration }

// summarize returns ds' median, p95 and maximum, each by the nearest-rank method (the
// smallest value with at least that share of ds at or below it). ds must not be empty.
func summarize(ds []time.Duration) stats {
	s := slices.Sorted(slices.Values(ds))
	rank := func(p float64) time.Duration { return s[max(int(math.Ceil(p*float64(len(s))))-1, 0)] }
	return stats{median: rank(0.5), p95: rank(0.95), max: s[len(s)-1]}
}

// loadAvg is the machine's 1-minute load average.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	return strings.Fields(string(b))[0]
}

// render writes the results as bench/README.md's abort section.
func render(samples []sample, b *bench) string {
	pick := func(f func(sample) time.Duration) stats {
		var ds []time.Duration
		for _, s := range samples {
			ds = append(ds, f(s))
		}
		return summarize(ds)
	}
	late, requests, minRPS := 0, 0, math.Inf(1)
	for _, s := range samples {
		late += s.lateAfterVisible
		requests += s.requests
		minRPS = min(minRPS, s.rps)
	}
	ms := func(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond)) }
	var w strings.Builder
	fmt.Fprintf(&w, "Command: `make bench-abort` (`go run ./bench/abort -runs %d -interval %s -rps %d -canary-errors %g -poll %s`), measured %s; load average %s at the start, %s at the end.\n\n",
		len(samples), b.interval, b.rps, b.errorRate, b.poll, time.Now().UTC().Format("2006-01-02 15:04 UTC"), b.loadBefore, b.loadAfter)
	fmt.Fprintf(&w, "%d failing rollouts, each with a fresh `sluice serve` (built from this repository, own stateDir, ephemeral\n", len(samples))
	fmt.Fprintf(&w, "ports) routing %d requests/s from this program to two `sluice demo-backend` processes; the Rollout\n", b.rps)
	fmt.Fprintf(&w, "sets the canary to %d%% and analyses its error ratio in-process every %s (window %s); the canary\n", canaryWeight, b.interval, b.window())
	fmt.Fprintf(&w, "fails %g%% of its requests, so the first measurement that counts fails and aborts. Each time runs\n", b.errorRate*100)
	w.WriteString("from that measurement's end (`finishedAt` in the status) until the moment below; median, p95 and max\n")
	fmt.Fprintf(&w, "over the %d runs (nearest rank: with 20 runs the p95 is the second largest):\n\n", len(samples))
	w.WriteString("| failing measurement → | median | p95 | max |\n|---|---:|---:|---:|\n")
	for _, row := range []struct {
		what string
		f    func(sample) time.Duration
	}{
		{"zero weight applied, as Sluice reports it (`abortLatencySeconds`)", func(s sample) time.Duration { return s.reported }},
		{"last request the canary answered (its send time, as the client saw it)", func(s sample) time.Duration { return s.client }},
		{fmt.Sprintf("abort visible in `GET /api/v1/rollouts/%s` (aborted, `actualWeight` 0; read every %s)", rolloutName, b.poll), func(s sample) time.Duration { return s.visible }},
	} {
		st := pick(row.f)
		fmt.Fprintf(&w, "| %s | %s | %s | %s |\n", row.what, ms(st.median), ms(st.p95), ms(st.max))
	}
	fmt.Fprintf(&w, "\nCanary answers to requests sent after the abort was visible in the status: %d (of %d requests answered in all\n", late, requests)
	fmt.Fprintf(&w, "runs; the slowest run's load got %.0f answers a second).\n\n", minRPS)
	fmt.Fprintf(&w, "Reading it: the decision is event-driven — a failed measurement wakes the controller, which saves the\n")
	fmt.Fprintf(&w, "state, swaps the router's table to weight 0 and records the latency when the router has applied it — so\n")
	fmt.Fprintf(&w, "these times do not grow with the interval. The time from the canary going bad to the zero weight does:\n")
	fmt.Fprintf(&w, "it is bounded by one analysis interval (%s here; the next measurement) plus the window that measurement\n", b.interval)
	fmt.Fprintf(&w, "needs to see the errors, plus the figures above (query, decision, save and push). The client's figure\n")
	fmt.Fprintf(&w, "is as fine as the load: at %d requests/s and weight %d%% the canary gets one about every %s, so the last\n",
		b.rps, canaryWeight, (time.Second / time.Duration(b.rps*canaryWeight/100)).Round(100*time.Microsecond))
	w.WriteString("one may be sent that long before the switch (a negative time: before the measurement ended). The status\n")
	w.WriteString("figure adds the poll interval and the status request itself. Measured on this project's shared 2-core\n")
	w.WriteString("machine: the load averages above say how busy it was.\n")
	return w.String()
}
