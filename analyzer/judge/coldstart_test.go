package judge_test

import (
	"testing"
	"time"

	"github.com/sluice-mesh/sluice/analyzer/judge"
	"github.com/sluice-mesh/sluice/analyzer/judge/sim"
	"github.com/sluice-mesh/sluice/config"
)

type caughtStats struct{ caught, median int }

// regressionRuns runs a 5× error canary runs times and counts the aborts.
func regressionRuns(family string, rps, share float64, cs sim.ColdStart, warmup time.Duration, runs int) caughtStats {
	f, _ := sim.FamilyByName(family)
	var r caughtStats
	var times []int
	for i := 0; i < runs; i++ {
		st := f.Stream
		st.RPS, st.CanaryShare, st.ErrorMult, st.Seed = rps, share, 5, uint64(9200+i)
		st.ColdStart, st.Warmup = cs, warmup
		if d, at := streamRun(st, judge.Config{}); d == judge.Fail {
			r.caught++
			times = append(times, at)
		}
	}
	for len(times) < runs {
		times = append(times, 1<<30)
	}
	r.median = median(times)
	return r
}

// coldStartRun runs the judge, with its in-process defaults, on a canary whose pods start
// with the rollout (sim.TypicalColdStart) behind a router with the given warm-up.
func coldStartRun(family string, rps, share float64, warmup time.Duration, seed uint64) (judge.Decision, int) {
	f, ok := sim.FamilyByName(family)
	if !ok {
		panic(family)
	}
	st := f.Stream
	st.RPS, st.CanaryShare, st.Seed = rps, share, seed
	st.ColdStart, st.Warmup = sim.TypicalColdStart, warmup
	return streamRun(st, judge.Config{})
}

// TestColdStartKeptOutByDefaultWarmup: a healthy canary that starts cold is not aborted
// when the router keeps its endpoints' first config.DefaultWarmup out of the series, in
// any of these seeded runs — and is aborted in most of them when warmup is 0, so this test
// fails if the exclusion (or the default) is broken. The same cold canary with 5× errors
// is caught under the default as often as warm, at most the warm-up later.
func TestColdStartKeptOutByDefaultWarmup(t *testing.T) {
	if config.DefaultWarmup <= 0 {
		t.Fatalf("config.DefaultWarmup = %v: a cold start would fail canaries by default", config.DefaultWarmup)
	}
	cells := []struct {
		family     string
		rps, share float64
	}{
		{"clean", 200, 0.1},
		{"clean", 1000, 0.5},
		{"realistic", 1000, 0.1},
	}
	const runs = 8
	for _, c := range cells {
		abortedDefault, abortedZero := 0, 0
		for i := 0; i < runs; i++ {
			seed := uint64(9100 + i)
			if d, at := coldStartRun(c.family, c.rps, c.share, config.DefaultWarmup, seed); d == judge.Fail {
				abortedDefault++
				t.Errorf("%s %g rps %g%%, seed %d: healthy cold canary aborted at %d s with the default warmup", c.family, c.rps, 100*c.share, seed, at)
			}
			if d, _ := coldStartRun(c.family, c.rps, c.share, 0, seed); d == judge.Fail {
				abortedZero++
			}
		}
		t.Logf("%s %g rps %g%%: aborted %d/%d with warmup %v, %d/%d with warmup 0", c.family, c.rps, 100*c.share, abortedDefault, runs, config.DefaultWarmup, abortedZero, runs)
		if abortedZero < runs/2 {
			t.Errorf("%s %g rps %g%%: warmup 0 aborted only %d/%d healthy cold canaries; the cold start is too weak to show the exclusion works", c.family, c.rps, 100*c.share, abortedZero, runs)
		}
	}
	// 5× errors: caught as often as the same canary warm with no warm-up, at most the
	// warm-up later. (Families with shared outages lose a few more: 30 s later, the judge
	// more often meets an outage before it has decided — as with a 30 s burn-in.)
	for _, c := range []struct {
		family     string
		rps, share float64
	}{{"clean", 200, 0.1}, {"clean", 1000, 0.5}, {"correlated", 200, 0.5}} {
		warm := regressionRuns(c.family, c.rps, c.share, sim.ColdStart{}, 0, runs)
		cold := regressionRuns(c.family, c.rps, c.share, sim.TypicalColdStart, config.DefaultWarmup, runs)
		t.Logf("%s %g rps %g%%, 5× errors: caught %d/%d (median %d s) warm, %d/%d (median %d s) cold with the default warmup",
			c.family, c.rps, 100*c.share, warm.caught, runs, warm.median, cold.caught, runs, cold.median)
		if cold.caught < warm.caught || cold.median > warm.median+int(config.DefaultWarmup.Seconds())+15 {
			t.Errorf("%s %g rps %g%%: the warm-up blinds the judge to a 5× error canary", c.family, c.rps, 100*c.share)
		}
	}
}
