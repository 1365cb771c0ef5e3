// Command judge-bench compares, on identical simulated request streams, ways to decide a
// canary: (a) the threshold AnalysisTemplate users copy today (error ratio ≤ 1% and p95 ≤
// 500 ms every 30 s, failureLimit 2, 10 measurements), (b) a Flagger-style check (error
// ratio ≤ 1% and p99 ≤ 500 ms every minute, rollback at 5 failed checks, promotion after
// 10), and (c) Sluice's judge (analyzer/judge, defaults, an errors and a latency metric,
// 5 min MaxDuration), in the classic table also (d) with a 30 s burn-in. It prints Markdown
// tables and, with -readme, writes them into bench/README.md's judge section.
//
// The classic table's streams come from analyzer/judge/sim.Scenario: Poisson arrivals at
// 5, 20, 100 and 1000 rps per cluster with traffic halving and doubling every minute,
// baseline error rate 0.5%, log-normal latency (median 50 ms, σ 0.5), the router's
// histogram buckets, and for the cold-start rows a spike in the canary's first 30 s
// (errors ×10, latency ×3, decaying linearly).
//
// The family tables' streams come from analyzer/judge/sim.Stream and sim.Families:
// realistic traffic (overdispersion, correlated noise, shared outages with misaligned
// edges, pod pauses, bursts, Prometheus scrapes) at -rates requests per second for the
// whole service and -shares of it to the canary. Every run is seeded: the same flags give
// the same tables.
package main

import (
	"flag"
	"fmt"
	"math"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sluice-mesh/sluice/analyzer/judge"
	"github.com/sluice-mesh/sluice/analyzer/judge/sim"
)

// kind is one simulated canary: healthy or regressed.
type kind struct {
	name      string
	healthy   bool
	coldStart bool
	errMult   float64
	latMult   float64
}

var classicKinds = []kind{
	{name: "healthy", healthy: true},
	{name: "healthy + cold start", healthy: true, coldStart: true},
	{name: "2× errors", errMult: 2},
	{name: "5× errors", errMult: 5},
	{name: "20× errors", errMult: 20},
	{name: "+20% latency", latMult: 1.2},
	{name: "+100% latency", latMult: 2},
}

var familyKinds = []kind{
	{name: "healthy", healthy: true},
	{name: "1.5× errors", errMult: 1.5},
	{name: "2× errors", errMult: 2},
	{name: "5× errors", errMult: 5},
	{name: "+20% latency", latMult: 1.2},
	{name: "+50% latency", latMult: 1.5},
	{name: "+100% latency", latMult: 2},
}

var classicRates = []float64{5, 20, 100, 1000}

var classicMethods = []string{
	"(a) threshold 30 s, failureLimit 2",
	"(b) Flagger 1 m, threshold 5",
	"(c) judge",
	"(d) judge, 30 s burn-in",
}

// runDeciders feeds one stream to the deciders until all have an outcome (at most 600 s).
func runDeciders(step func() (b, c judge.ClusterStats), ds []decider) []outcome {
	hist := []judge.ClusterStats{{Latency: judge.Histogram{Bounds: sim.Buckets, Counts: make([]float64, len(sim.Buckets))}}}
	for t := 1; t <= 600; t++ {
		base, can := step()
		hist = append(hist, can)
		done := true
		for _, d := range ds {
			d.update(t, hist, base, can)
			done = done && d.result() != nil
		}
		if done {
			break
		}
	}
	out := make([]outcome, len(ds))
	for i, d := range ds {
		if r := d.result(); r != nil {
			out[i] = *r
		} else {
			out[i] = outcome{t: 600}
		}
	}
	return out
}

func runClassic(k kind, rps float64, seed uint64) []outcome {
	sm := sim.New(sim.Scenario{RPS: rps, ErrorMult: k.errMult, LatencyMult: k.latMult, ColdStart: k.coldStart, VaryTraffic: true, Seed: seed})
	return runDeciders(sm.Step, []decider{templateA(), flaggerB(), newJudges(0), newJudges(30 * time.Second)})
}

// familyCell is one row of the family tables.
type familyCell struct {
	fam   sim.Family
	rps   float64
	share float64
}

// wanderFor is the Config.Wander a run uses: the -wander flag's value, or with
// -wander family the family's own drift (the log standard deviation of its error noise
// when that noise drifts, else 0).
func wanderFor(f sim.Family, flagValue string) float64 {
	if flagValue == "family" {
		if f.Stream.ErrorNoise.Corr > 0 {
			return f.Stream.ErrorNoise.Sigma
		}
		return 0
	}
	v, _ := strconv.ParseFloat(flagValue, 64)
	return v
}

func runFamily(c familyCell, k kind, seed uint64, wander string) []outcome {
	st := c.fam.Stream
	st.RPS, st.CanaryShare, st.ErrorMult, st.LatencyMult, st.Seed = c.rps, c.share, k.errMult, k.latMult, seed
	cfg := judge.Config{Wander: wanderFor(c.fam, wander)}
	if st.ScrapeInterval > 0 {
		cfg.BurnIn = judge.DefaultPrometheusBurnIn // what ConfigFrom gives a judge reading Prometheus
	}
	sm := sim.NewStream(st)
	return runDeciders(sm.Step, []decider{templateA(), flaggerB(), newJudgesWith(cfg)})
}

// cell holds the outcomes of one decider over the runs of one scenario.
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

// share returns the fraction of runs for which is holds.
func (c cell) share(is func(outcome) bool) float64 {
	n := 0
	for _, o := range c.outs {
		if is(o) {
			n++
		}
	}
	return float64(n) / float64(len(c.outs))
}

func (c cell) passRate() float64  { return c.share(func(o outcome) bool { return o.passed }) }
func (c cell) abortRate() float64 { return c.share(func(o outcome) bool { return o.aborted }) }

// wilson is the Wilson score 95% interval of a rate p observed in n runs.
func wilson(p float64, n int) (lo, hi float64) {
	const z = 1.96
	nn := float64(n)
	d := 1 + z*z/nn
	c := (p + z*z/(2*nn)) / d
	h := z * math.Sqrt(p*(1-p)/nn+z*z/(4*nn*nn)) / d
	return math.Max(0, c-h), math.Min(1, c+h)
}

func secs(v float64) string {
	if math.IsInf(v, 1) {
		return "—"
	}
	return fmt.Sprintf("%.0f s", v)
}

// parallel runs fn(i) for i in [0, n) on workers goroutines.
func parallel(n, workers int, fn func(i int)) {
	next := make(chan int, 256)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				fn(i)
			}
		}()
	}
	for i := 0; i < n; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
}

// runCounts returns how many runs each scenario gets — groups × kinds, healthy kinds
// healthyRuns, regressions runs — and their total.
func runCounts(groups int, kinds []kind, healthyRuns, runs int) (counts []int, total int) {
	for g := 0; g < groups; g++ {
		for _, k := range kinds {
			n := runs
			if k.healthy {
				n = healthyRuns
			}
			counts = append(counts, n)
			total += n
		}
	}
	return counts, total
}

// scenarioRuns holds every run of every scenario: runs[s][r] are the deciders' outcomes.
type scenarioRuns [][][]outcome

// runAll runs counts[s] runs of every scenario s with run(s, r).
func runAll(counts []int, workers int, run func(s, r int) []outcome) scenarioRuns {
	all := make(scenarioRuns, len(counts))
	type task struct{ s, r int }
	var tasks []task
	for s, n := range counts {
		all[s] = make([][]outcome, n)
		for r := 0; r < n; r++ {
			tasks = append(tasks, task{s, r})
		}
	}
	parallel(len(tasks), workers, func(i int) {
		tk := tasks[i]
		all[tk.s][tk.r] = run(tk.s, tk.r)
	})
	return all
}

func (sr scenarioRuns) cell(s, method int) cell {
	var c cell
	for _, o := range sr[s] {
		c.outs = append(c.outs, o[method])
	}
	return c
}

func healthyCell(c cell) string {
	return fmt.Sprintf("%.1f%% · %s / %s", 100*c.abortRate(), secs(c.quantile(0.5, false)), secs(c.quantile(0.95, false)))
}

func regressionCell(c cell) string {
	return fmt.Sprintf("%.0f%% · %s / %s", 100*c.abortRate(), secs(c.quantile(0.5, true)), secs(c.quantile(0.95, true)))
}

func classicTable(healthyRuns, runs, workers int, seed uint64) string {
	start := time.Now()
	counts, total := runCounts(len(classicRates), classicKinds, healthyRuns, runs)
	all := runAll(counts, workers, func(s, r int) []outcome {
		ki, ri := s%len(classicKinds), s/len(classicKinds)
		sd := seed*1_000_003 + uint64(ki)*100_000_007 + uint64(ri)*10_000_019 + uint64(r)
		return runClassic(classicKinds[ki], classicRates[ri], sd)
	})
	var out strings.Builder
	fmt.Fprintf(&out, "`go run ./bench/judge -families none -healthy-runs %d -runs %d -seed %d` (%d simulated canaries, %.0f s on this machine, load average %s).\n\n",
		healthyRuns, runs, seed, total, time.Since(start).Seconds(), loadAvg())
	out.WriteString("Regressions: share aborted · median / p95 time to abort (— : fewer than half / 95% aborted within the run).\n")
	out.WriteString("Healthy: false-abort rate · median / p95 time to promote.\n\n")
	out.WriteString("| rps | canary |")
	for _, m := range classicMethods {
		out.WriteString(" " + m + " |")
	}
	out.WriteString("\n|---|---|" + strings.Repeat("---|", len(classicMethods)) + "\n")
	for ri, rps := range classicRates {
		for ki, k := range classicKinds {
			s := ri*len(classicKinds) + ki
			fmt.Fprintf(&out, "| %g | %s |", rps, k.name)
			for m := range classicMethods {
				if k.healthy {
					out.WriteString(" " + healthyCell(all.cell(s, m)) + " |")
				} else {
					out.WriteString(" " + regressionCell(all.cell(s, m)) + " |")
				}
			}
			out.WriteString("\n")
		}
	}
	return out.String()
}

func familyTables(cells []familyCell, healthyRuns, runs, workers int, seed uint64, wander string, cmd string) string {
	start := time.Now()
	counts, total := runCounts(len(cells), familyKinds, healthyRuns, runs)
	all := runAll(counts, workers, func(s, r int) []outcome {
		sd := (seed+7919)*1_000_003 + uint64(s)*100_000_007 + uint64(r)
		return runFamily(cells[s/len(familyKinds)], familyKinds[s%len(familyKinds)], sd, wander)
	})
	var out strings.Builder
	fmt.Fprintf(&out, "`%s` (%d simulated canaries, %.0f s on this machine, load average %s).\n\n", cmd, total, time.Since(start).Seconds(), loadAvg())
	out.WriteString("Healthy canaries (same distribution as stable): false-abort rate of (a) the threshold template, (b) Flagger-style checks, (c) the judge with its Wilson 95% interval, and the judge's median / p95 time to promote.\n\n")
	out.WriteString("| family | rps | canary share | (a) | (b) | (c) judge | judge: time to promote |\n|---|---|---|---|---|---|---|\n")
	for ci, c := range cells {
		s := ci * len(familyKinds)
		j := all.cell(s, 2)
		lo, hi := wilson(j.abortRate(), len(j.outs))
		fmt.Fprintf(&out, "| %s | %g | %g%% | %.1f%% | %.1f%% | **%.1f%%** [%.1f, %.1f] | %s / %s |\n", c.fam.Name, c.rps, 100*c.share,
			100*all.cell(s, 0).abortRate(), 100*all.cell(s, 1).abortRate(), 100*j.abortRate(), 100*lo, 100*hi,
			secs(j.quantile(0.5, false)), secs(j.quantile(0.95, false)))
	}
	out.WriteString("\nRegressed canaries: share aborted and median time to abort by (c) the judge (in bold; \"passed\": share it passed — wrongly, except for +20% latency, which is inside its default tolerance of 1.2× + 10 ms), then (a) and (b) (— : fewer than half aborted within the run).\n\n")
	out.WriteString("| family | rps | canary share |")
	for _, k := range familyKinds[1:] {
		out.WriteString(" " + k.name + " |")
	}
	out.WriteString("\n|---|---|---|" + strings.Repeat("---|", len(familyKinds)-1) + "\n")
	short := func(c cell) string {
		return fmt.Sprintf("%.0f%% %s", 100*c.abortRate(), secs(c.quantile(0.5, true)))
	}
	for ci, c := range cells {
		fmt.Fprintf(&out, "| %s | %g | %g%% |", c.fam.Name, c.rps, 100*c.share)
		for ki := 1; ki < len(familyKinds); ki++ {
			s := ci*len(familyKinds) + ki
			j := all.cell(s, 2)
			pass := ""
			if r := j.passRate(); r > 0 {
				pass = fmt.Sprintf(" passed %.0f%%", 100*r)
			}
			fmt.Fprintf(&out, " **%s**%s · %s · %s |", short(j), pass, short(all.cell(s, 0)), short(all.cell(s, 1)))
		}
		out.WriteString("\n")
	}
	return out.String()
}

// loadAvg is the 1-minute load average when the table is written ("?" where unknown): the
// machine is shared, and the run times depend on it.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); err == nil && len(f) > 0 {
		return f[0]
	}
	return "?"
}

func parseFloats(s string) ([]float64, error) {
	var out []float64
	for _, f := range strings.Split(s, ",") {
		v, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
		if err != nil {
			return nil, fmt.Errorf("%q: %w", f, err)
		}
		out = append(out, v)
	}
	return out, nil
}

func main() {
	healthyRuns := flag.Int("healthy-runs", 1000, "runs per healthy scenario (classic table)")
	runs := flag.Int("runs", 200, "runs per regression scenario (classic table)")
	famHealthy := flag.Int("family-healthy-runs", 200, "runs per healthy scenario (family tables)")
	famRuns := flag.Int("family-runs", 30, "runs per regression scenario (family tables)")
	families := flag.String("families", "all", "comma-separated stream families for the family tables, all, or none; classic for the classic table only")
	rates := flag.String("rates", "100,1000", "family tables: service request rates (both clusters together)")
	shares := flag.String("shares", "0.1,0.5", "family tables: canary shares of the traffic")
	wander := flag.String("wander", "0", "family tables: the judge's Config.Wander, or family: each family's own drift (0 for those without one)")
	bound := flag.Bool("bound", false, "also print the fixed-time bound table (what a test knowing the healthy distribution could catch)")
	classic := flag.Bool("classic", true, "also run the classic table (Poisson streams, cold starts, burn-in)")
	seed := flag.Uint64("seed", 1, "base seed")
	workers := flag.Int("workers", runtime.GOMAXPROCS(0), "parallel workers")
	readme := flag.String("readme", "", "also write the tables into this README's judge section")
	flag.Parse()

	var fams []sim.Family
	switch *families {
	case "all":
		fams = sim.Families
	case "none", "":
	default:
		for _, n := range strings.Split(*families, ",") {
			f, ok := sim.FamilyByName(strings.TrimSpace(n))
			if !ok {
				var names []string
				for _, f := range sim.Families {
					names = append(names, f.Name)
				}
				fmt.Fprintf(os.Stderr, "-families: unknown family %q (have %s)\n", n, strings.Join(names, ", "))
				os.Exit(2)
			}
			fams = append(fams, f)
		}
	}
	rs, err := parseFloats(*rates)
	if err != nil {
		fmt.Fprintln(os.Stderr, "-rates:", err)
		os.Exit(2)
	}
	ss, err := parseFloats(*shares)
	if err != nil {
		fmt.Fprintln(os.Stderr, "-shares:", err)
		os.Exit(2)
	}

	sections := map[string]string{}
	if *classic {
		t := classicTable(*healthyRuns, *runs, *workers, *seed)
		fmt.Print(t, "\n")
		sections["judge:table"] = t
	}
	if len(fams) > 0 {
		var cells []familyCell
		for _, f := range fams {
			for _, r := range rs {
				for _, s := range ss {
					cells = append(cells, familyCell{f, r, s})
				}
			}
		}
		var names []string
		for _, f := range fams {
			names = append(names, f.Name)
		}
		cmd := fmt.Sprintf("go run ./bench/judge -classic=false -families %s -rates %s -shares %s -family-healthy-runs %d -family-runs %d -seed %d",
			strings.Join(names, ","), *rates, *shares, *famHealthy, *famRuns, *seed)
		section := "judge:families"
		if *wander != "0" {
			if _, err := strconv.ParseFloat(*wander, 64); err != nil && *wander != "family" {
				fmt.Fprintln(os.Stderr, "-wander: want a number or family")
				os.Exit(2)
			}
			cmd += " -wander " + *wander
			section = "judge:wander"
		}
		t := familyTables(cells, *famHealthy, *famRuns, *workers, *seed, *wander, cmd)
		fmt.Print(t)
		sections[section] = t
	}
	if *bound {
		t := boundTable(*workers)
		fmt.Print("\n", t)
		sections["judge:bound"] = t
	}
	if *readme != "" {
		for name, t := range sections {
			if err := writeSection(*readme, name, t); err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
		}
	}
}

// writeSection replaces the generated part between <!-- NAME:begin --> and
// <!-- NAME:end --> (inside the judge section).
func writeSection(path, name, table string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	s := string(b)
	begin, end := "<!-- "+name+":begin -->", "<!-- "+name+":end -->"
	i, j := strings.Index(s, begin), strings.Index(s, end)
	if i < 0 || j < i {
		return fmt.Errorf("%s: no %s … %s markers inside the judge section", path, begin, end)
	}
	s = s[:i+len(begin)] + "\n" + table + s[j:]
	return os.WriteFile(path, []byte(s), 0o644)
}
