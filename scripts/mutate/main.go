// Command mutate is mutation testing for Sluice (`make mutate`): it plants each plausible
// one-line bug of a list (scripts/mutate/mutants.txt), one at a time, in a temporary copy
// of the repository, runs the tests of the packages the entry names, and reports whether
// they caught it (and which test failed) or let it survive.
//
// The working tree is never written: the copy is made once, each mutant is planted in it
// and taken out again, and the copy is removed at the end, on Ctrl-C or SIGTERM (a copy
// left by a run killed outright is removed by the next run). The build cache is shared.
//
// An entry whose original text is not found exactly once is stale: it is reported
// loudly, so the list is kept current as the code changes. The exit status is 0 only
// when every mutant was caught; 1 when one survived, is stale or does not compile; 2
// when the list cannot be read or the tests fail without any mutant.
//
// Usage:
//
//	go run ./scripts/mutate [-run REGEXP] [-timeout 5m] [-baseline=false] [-check] [-v]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
)

const module = "github.com/sluice-mesh/sluice"

func main() { os.Exit(run()) }

// verdict is the outcome for one mutant.
type verdict string

const (
	caught   verdict = "caught"
	survived verdict = "SURVIVED"
	stale    verdict = "STALE"
	broken   verdict = "BROKEN" // the mutant does not compile: fix the entry
)

type outcome struct {
	m       *Mutant
	verdict verdict
	detail  string
	took    time.Duration
}

func run() int {
	var (
		listPath = flag.String("list", "", "mutant list (default scripts/mutate/mutants.txt in the repository)")
		only     = flag.String("run", "", "only the mutants whose name matches this regexp")
		timeout  = flag.Duration("timeout", 5*time.Minute, "go test -timeout for each mutant (an entry's timeout: wins)")
		baseline = flag.Bool("baseline", true, "first run the named packages' tests without any mutant (they must pass)")
		check    = flag.Bool("check", false, "only check that every entry applies (no tests run)")
		verbose  = flag.Bool("v", false, "print the output of the tests that caught each mutant")
	)
	flag.Parse()
	root, err := repoRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, "mutate:", err)
		return 2
	}
	if *listPath == "" {
		*listPath = filepath.Join(root, "scripts", "mutate", "mutants.txt")
	}
	mutants, err := readList(*listPath)
	if err != nil {
		fmt.Fprintln(os.Stderr, "mutate:", err)
		return 2
	}
	if *only != "" {
		re, err := regexp.Compile(*only)
		if err != nil {
			fmt.Fprintln(os.Stderr, "mutate: -run:", err)
			return 2
		}
		mutants = slices.DeleteFunc(mutants, func(m *Mutant) bool { return !re.MatchString(m.Name) })
	}
	if len(mutants) == 0 {
		fmt.Fprintln(os.Stderr, "mutate: no mutants selected")
		return 2
	}

	// Stale entries first, loudly, before anything runs.
	var results []outcome
	var live []*Mutant
	for _, m := range mutants {
		src, err := os.ReadFile(filepath.Join(root, m.File))
		if err == nil {
			_, err = m.apply(string(src))
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "mutate: STALE %s (%s:%d): %v — update the list\n", m.Name, filepath.Base(*listPath), m.Line, err)
			results = append(results, outcome{m: m, verdict: stale, detail: err.Error()})
			continue
		}
		live = append(live, m)
	}
	if *check {
		fmt.Printf("%d mutants, %d apply, %d stale\n", len(mutants), len(live), len(mutants)-len(live))
		if len(live) != len(mutants) {
			return 1
		}
		return 0
	}

	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	removeOrphans()
	began := time.Now()
	dir, src, err := copyTree(root)
	if err != nil {
		fmt.Fprintln(os.Stderr, "mutate: copying the tree:", err)
		return 2
	}
	defer os.RemoveAll(dir)
	fmt.Printf("mutate: %d mutants in a copy of the tree at %s\n", len(live), src)

	if *baseline {
		for _, b := range baselines(live) {
			fmt.Printf("mutate: baseline: go test %s%s\n", strings.Join(b.Packages, " "), runFlag(b.Run))
			res, err := goTest(ctx, src, b.Packages, b.Run, *timeout)
			if ctx.Err() != nil {
				fmt.Fprintln(os.Stderr, "mutate: interrupted")
				return 130
			}
			if err != nil || !res.passed() {
				fmt.Fprintf(os.Stderr, "mutate: the tests fail without any mutant: nothing can be concluded\n")
				if err != nil {
					fmt.Fprintln(os.Stderr, err)
				} else {
					printFailure(res, os.Stderr)
				}
				return 2
			}
			fmt.Printf("mutate: baseline passed in %s\n", res.Elapsed.Round(time.Second))
		}
	}

	for i, m := range live {
		o := plant(ctx, src, m, *timeout, *verbose)
		if ctx.Err() != nil {
			fmt.Fprintln(os.Stderr, "mutate: interrupted; the copy is removed, the working tree was never touched")
			return 130
		}
		results = append(results, o)
		fmt.Printf("[%2d/%d] %-8s %-28s %6s  %s\n", i+1, len(live), o.verdict, m.Name, o.took.Round(time.Second), o.detail)
	}
	return report(results, time.Since(began))
}

// plant writes m into the copy, runs its tests and takes it out again.
func plant(ctx context.Context, src string, m *Mutant, timeout time.Duration, verbose bool) outcome {
	path := filepath.Join(src, m.File)
	orig, err := os.ReadFile(path)
	if err != nil {
		return outcome{m: m, verdict: stale, detail: err.Error()}
	}
	mutated, err := m.apply(string(orig))
	if err != nil {
		return outcome{m: m, verdict: stale, detail: err.Error()}
	}
	if err := os.WriteFile(path, []byte(mutated), 0o644); err != nil {
		return outcome{m: m, verdict: broken, detail: err.Error()}
	}
	defer os.WriteFile(path, orig, 0o644)
	if m.Timeout > 0 {
		timeout = m.Timeout
	}
	res, err := goTest(ctx, src, m.Packages, m.Run, timeout)
	if err != nil {
		return outcome{m: m, verdict: broken, detail: err.Error()}
	}
	o := outcome{m: m, took: res.Elapsed}
	switch {
	case len(res.BuildFailed) > 0:
		o.verdict, o.detail = broken, "does not compile: "+strings.Join(res.Output["build"], " / ")
	case res.TimedOut && len(res.Failed) == 0:
		o.verdict, o.detail = caught, "tests hung (timeout "+timeout.String()+")"
	case !res.passed():
		o.verdict, o.detail = caught, strings.Join(res.culprits(module, 3), ", ")
		if verbose {
			printFailure(res, os.Stdout)
		}
	default:
		o.verdict, o.detail = survived, "every test of "+strings.Join(m.Packages, " ")+" passed: "+m.Bug
	}
	return o
}

// baselines groups the mutants' package sets: one run per distinct -run regexp.
func baselines(ms []*Mutant) []*Mutant {
	byRun := map[string]*Mutant{}
	var out []*Mutant
	for _, m := range ms {
		b := byRun[m.Run]
		if b == nil {
			b = &Mutant{Run: m.Run}
			byRun[m.Run] = b
			out = append(out, b)
		}
		for _, p := range m.Packages {
			if !slices.Contains(b.Packages, p) {
				b.Packages = append(b.Packages, p)
			}
		}
	}
	return out
}

func runFlag(re string) string {
	if re == "" {
		return ""
	}
	return " -run '" + re + "'"
}

// printFailure prints the output of the first failing tests.
func printFailure(res *testResult, w *os.File) {
	keys := append(append(append([]string(nil), res.Failed...), res.PkgFailed...), res.BuildFailed...)
	if len(res.BuildFailed) > 0 {
		keys = append(keys, "build")
	}
	for i, k := range keys {
		if i == 3 {
			break
		}
		fmt.Fprintf(w, "    --- %s\n", k)
		lines := res.Output[k]
		if len(lines) > 40 {
			lines = lines[len(lines)-40:]
		}
		for _, l := range lines {
			fmt.Fprintf(w, "      %s\n", l)
		}
	}
}

// report prints the table and the score, and returns the exit status.
func report(results []outcome, took time.Duration) int {
	fmt.Println()
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "MUTANT\tVERDICT\tFILE\tCAUGHT BY / WHY")
	n := map[verdict]int{}
	for _, o := range results {
		n[o.verdict]++
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", o.m.Name, o.verdict, o.m.File, o.detail)
	}
	tw.Flush()
	total := len(results)
	fmt.Printf("\nmutation score: %d of %d caught (%.1f%%); %d survived, %d stale, %d broken; %s\n",
		n[caught], total, 100*float64(n[caught])/float64(total), n[survived], n[stale], n[broken], took.Round(time.Second))
	if n[caught] != total {
		fmt.Println("mutate: FAIL — write the test a survivor shows is missing; update stale or broken entries")
		return 1
	}
	return 0
}

func readList(path string) ([]*Mutant, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return parseList(f, filepath.Base(path))
}

func repoRoot() (string, error) {
	out, err := exec.Command("git", "rev-parse", "--show-toplevel").Output()
	if err != nil {
		return "", fmt.Errorf("not inside the repository (git rev-parse: %v)", err)
	}
	return strings.TrimSpace(string(out)), nil
}
