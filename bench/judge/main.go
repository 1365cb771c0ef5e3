// Command judge-bench compares, on identical simulated request streams, three ways to
// decide a canary: (a) the threshold AnalysisTemplate users copy today (error ratio ≤ 1%
// and p95 ≤ 500 ms every 30 s, failureLimit 2, 10 measurements), (b) a Flagger-style
// check (error ratio ≤ 1% and p99 ≤ 500 ms every minute, rollback at 5 failed checks,
// promotion after 10), and (c) Sluice's judge (analyzer/judge, defaults, an errors and a
// latency metric, 5 min MaxDuration), also (d) with a 30 s burn-in. It prints a Markdown
// table and, with -readme, writes it into bench/README.md's judge section.
//
// Streams come from analyzer/judge/sim: Poisson arrivals at 5, 20, 100 and 1000 rps per
// cluster with traffic halving and doubling every minute, baseline error rate 0.5%,
// log-normal latency (median 50 ms, σ 0.5), the router's histogram buckets, and for the
// cold-start rows a spike in the canary's first 30 s (errors ×10, latency ×3, decaying
// linearly). Every run is seeded: the same flags give the same table.
package main

import (
	"flag"
	"fmt"
	"math"
	"os"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/sluice-mesh/sluice/analyzer/judge"
	"github.com/sluice-mesh/sluice/analyzer/judge/sim"
)

type kind struct {
	name      string
	healthy   bool
	coldStart bool
	errMult   float64
	latMult   float64
}

var kinds = []kind{
	{name: "healthy", healthy: true},
	{name: "healthy + cold start", healthy: true, coldStart: true},
	{name: "2× errors", errMult: 2},
	{name: "5× errors", errMult: 5},
	{name: "20× errors", errMult: 20},
	{name: "+20% latency", latMult: 1.2},
	{name: "+100% latency", latMult: 2},
}

var rates = []float64{5, 20, 100, 1000}

const nMethods = 4

var methodNames = [nMethods]string{
	"(a) threshold 30 s, failureLimit 2",
	"(b) Flagger 1 m, threshold 5",
	"(c) judge",
	"(d) judge, 30 s burn-in",
}

// outcome of one method in one run: aborted or promoted, at second t.
type outcome struct {
	aborted bool
	t       float64
}

// threshold is an interval check on the canary's own window: fails when the window's
// error ratio is above maxErr or its latency quantile q above maxLat.
type threshold struct {
	every, count, abortAt int // seconds between checks, checks before promotion, failures that abort
	q                     float64
	failed, done          int
	result                *outcome
}

func (th *threshold) check(t int, hist []judge.ClusterStats) {
	if th.result != nil || t%th.every != 0 {
		return
	}
	cur, prev := hist[t], hist[t-th.every]
	req, errs := cur.Requests-prev.Requests, cur.Errors-prev.Errors
	h := judge.Histogram{Bounds: cur.Latency.Bounds, Counts: make([]float64, len(cur.Latency.Counts)), Count: cur.Latency.Count - prev.Latency.Count}
	for i := range h.Counts {
		h.Counts[i] = cur.Latency.Counts[i] - prev.Latency.Counts[i]
	}
	ratio := math.NaN()
	if req > 0 {
		ratio = errs / req
	}
	ok := ratio <= 0.01 && h.Count > 0 && h.Quantile(th.q) <= 0.5 // NaN (no data) fails, as in Argo
	th.done++
	if !ok {
		th.failed++
	}
	switch {
	case th.failed >= th.abortAt:
		th.result = &outcome{aborted: true, t: float64(t)}
	case th.done >= th.count:
		th.result = &outcome{t: float64(t)}
	case th.failed+(th.count-th.done) < th.abortAt:
		// It can no longer abort: promotion at the end is certain.
		th.result = &outcome{t: float64(th.every * th.count)}
	}
}

// judges runs an errors and a latency session; abort on either Fail, promote when both
// end otherwise (Pass or Inconclusive at MaxDuration).
type judges struct {
	s      [2]*judge.Session
	d      [2]judge.Decision
	result *outcome
}

func newJudges(burnIn time.Duration) *judges {
	t0 := time.Unix(0, 0)
	z := judge.ClusterStats{}
	j := &judges{}
	for i, sig := range []judge.Signal{judge.SignalErrors, judge.SignalLatency} {
		j.s[i] = judge.NewSession(judge.Config{Signal: sig, MaxDuration: 5 * time.Minute, BurnIn: burnIn}, t0, z, z)
	}
	return j
}

func (j *judges) update(t int, b, c judge.ClusterStats) {
	if j.result != nil {
		return
	}
	now := time.Unix(int64(t), 0)
	final := true
	for i, s := range j.s {
		if !j.d[i].Final() {
			j.d[i] = s.Decide(now, b, c)
		}
		if j.d[i] == judge.Fail {
			j.result = &outcome{aborted: true, t: float64(t)}
			return
		}
		final = final && j.d[i].Final()
	}
	if final {
		j.result = &outcome{t: float64(t)}
	}
}

func runOne(k kind, rps float64, seed uint64) [nMethods]outcome {
	sm := sim.New(sim.Scenario{RPS: rps, ErrorMult: k.errMult, LatencyMult: k.latMult, ColdStart: k.coldStart, VaryTraffic: true, Seed: seed})
	hist := []judge.ClusterStats{{Latency: judge.Histogram{Bounds: sim.Buckets, Counts: make([]float64, len(sim.Buckets))}}}
	a := &threshold{every: 30, count: 10, abortAt: 3, q: 0.95}
	b := &threshold{every: 60, count: 10, abortAt: 5, q: 0.99}
	c, d := newJudges(0), newJudges(30*time.Second)
	for t := 1; t <= 600; t++ {
		base, can := sm.Step()
		hist = append(hist, can)
		a.check(t, hist)
		b.check(t, hist)
		c.update(t, base, can)
		d.update(t, base, can)
		if a.result != nil && b.result != nil && c.result != nil && d.result != nil {
			break
		}
	}
	return [nMethods]outcome{*a.result, *b.result, *c.result, *d.result}
}

type cell struct{ outs []outcome }

// quantile of the time to abort (healthy: to promote) with the other runs as +Inf.
func (c cell) quantile(q float64, abort bool) float64 {
	ts := make([]float64, len(c.outs))
	for i, o := range c.outs {
		ts[i] = math.Inf(1)
		if o.aborted == abort {
			ts[i] = o.t
		}
	}
	sort.Float64s(ts)
	return ts[int(math.Ceil(q*float64(len(ts))))-1]
}

func (c cell) abortRate() float64 {
	n := 0
	for _, o := range c.outs {
		if o.aborted {
			n++
		}
	}
	return float64(n) / float64(len(c.outs))
}

func secs(v float64) string {
	if math.IsInf(v, 1) {
		return "—"
	}
	return fmt.Sprintf("%.0f s", v)
}

func main() {
	healthyRuns := flag.Int("healthy-runs", 1000, "runs per healthy scenario")
	runs := flag.Int("runs", 200, "runs per regression scenario")
	seed := flag.Uint64("seed", 1, "base seed")
	workers := flag.Int("workers", runtime.GOMAXPROCS(0), "parallel workers")
	readme := flag.String("readme", "", "also write the table into this README's judge section")
	flag.Parse()

	start := time.Now()
	type job struct{ ki, ri, n int }
	var jobs []job
	for ki, k := range kinds {
		for ri := range rates {
			n := *runs
			if k.healthy {
				n = *healthyRuns
			}
			jobs = append(jobs, job{ki, ri, n})
		}
	}
	// all[ki][ri][run] filled by workers; deterministic whatever the scheduling.
	all := make([][][][nMethods]outcome, len(kinds))
	for ki := range kinds {
		all[ki] = make([][][nMethods]outcome, len(rates))
		for ri := range rates {
			all[ki][ri] = make([][nMethods]outcome, jobs[ki*len(rates)+ri].n)
		}
	}
	type task struct{ ki, ri, run int }
	tasks := make(chan task, 256)
	var wg sync.WaitGroup
	for w := 0; w < *workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for tk := range tasks {
				s := *seed*1_000_003 + uint64(tk.ki)*100_000_007 + uint64(tk.ri)*10_000_019 + uint64(tk.run)
				all[tk.ki][tk.ri][tk.run] = runOne(kinds[tk.ki], rates[tk.ri], s)
			}
		}()
	}
	total := 0
	for _, j := range jobs {
		for r := 0; r < j.n; r++ {
			tasks <- task{j.ki, j.ri, r}
			total++
		}
	}
	close(tasks)
	wg.Wait()

	var out strings.Builder
	fmt.Fprintf(&out, "`go run ./bench/judge -healthy-runs %d -runs %d -seed %d` (%d simulated canaries, %.0f s on this machine).\n\n",
		*healthyRuns, *runs, *seed, total, time.Since(start).Seconds())
	out.WriteString("Regressions: share aborted · median / p95 time to abort (— : fewer than half / 95% aborted within the run).\n")
	out.WriteString("Healthy: false-abort rate · median / p95 time to promote.\n\n")
	out.WriteString("| rps | canary |")
	for _, m := range methodNames {
		out.WriteString(" " + m + " |")
	}
	out.WriteString("\n|---|---|" + strings.Repeat("---|", nMethods) + "\n")
	for ri, rps := range rates {
		for ki, k := range kinds {
			fmt.Fprintf(&out, "| %g | %s |", rps, k.name)
			for m := 0; m < nMethods; m++ {
				var c cell
				for _, o := range all[ki][ri] {
					c.outs = append(c.outs, o[m])
				}
				if k.healthy {
					fmt.Fprintf(&out, " %.1f%% · %s / %s |", 100*c.abortRate(), secs(c.quantile(0.5, false)), secs(c.quantile(0.95, false)))
				} else {
					fmt.Fprintf(&out, " %.0f%% · %s / %s |", 100*c.abortRate(), secs(c.quantile(0.5, true)), secs(c.quantile(0.95, true)))
				}
			}
			out.WriteString("\n")
		}
	}
	fmt.Print(out.String())
	if *readme != "" {
		if err := writeSection(*readme, out.String()); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
}

// writeSection replaces the generated part of the judge section: everything between
// <!-- judge:table:begin --> and <!-- judge:table:end --> (inside the judge section).
func writeSection(path, table string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	s := string(b)
	const begin, end = "<!-- judge:table:begin -->", "<!-- judge:table:end -->"
	i, j := strings.Index(s, begin), strings.Index(s, end)
	if i < 0 || j < i {
		return fmt.Errorf("%s: no %s … %s markers inside the judge section", path, begin, end)
	}
	s = s[:i+len(begin)] + "\n" + table + s[j:]
	return os.WriteFile(path, []byte(s), 0o644)
}
