package main

import (
	"fmt"
	"math"
	"sort"
	"strings"
	"time"

	"github.com/sluice-mesh/sluice/analyzer/judge/sim"
)

// boundCase is one row of the fixed-time bound table.
type boundCase struct {
	family      string
	rps, share  float64
	errMult     float64
	secs        int
	description string
}

var boundCases = []boundCase{
	{"clean", 1000, 0.5, 2, 15, "clean streams"},
	{"correlated", 1000, 0.5, 2, 15, "σ 0.5 drift over ~30 s"},
	{"clean", 200, 0.5, 5, 10, "clean streams"},
	{"correlated", 200, 0.5, 5, 10, "σ 0.5 drift"},
	{"correlated", 200, 0.5, 5, 20, "σ 0.5 drift"},
	{"realistic", 200, 0.5, 5, 20, "realistic mix"},
}

// boundZ is the binomial z-score, after secs seconds of one stream, of the canary's share
// of all errors against its share of all requests.
func boundZ(c boundCase, errMult float64, seed uint64) float64 {
	f, _ := sim.FamilyByName(c.family)
	st := f.Stream
	st.RPS, st.CanaryShare, st.ErrorMult, st.Seed = c.rps, c.share, errMult, seed
	sm := sim.NewStream(st)
	for i := 0; i < c.secs; i++ {
		sm.Step()
	}
	b, can := sm.True()
	tot := b.Errors + can.Errors
	pi := can.Requests / (can.Requests + b.Requests)
	if tot == 0 {
		return 0
	}
	return (can.Errors - tot*pi) / math.Sqrt(tot*pi*(1-pi))
}

// boundTable: for each case, the threshold a test looking once, after secs seconds, at
// the canary's share of the errors must use to abort at most 1% of healthy canaries of the
// family (its 99th percentile over 4,000 healthy streams), and the share of regressed
// canaries (1,000 streams) above it. No anytime-valid test can catch more by that second
// with this statistic; one that does not know which family it is in must pick one
// threshold for all.
func boundTable(workers int) string {
	start := time.Now()
	const healthy, regressed = 4000, 1000
	var out strings.Builder
	fmt.Fprintf(&out, "`go run ./bench/judge -families none -classic=false -bound` (%.0f s on this machine, load average %s).\n\n", 0.0, loadAvg())
	out.WriteString("| stream | rps | canary share | canary | after | 1%-threshold (z) | caught by then | clean-stream canary caught at this threshold |\n|---|---|---|---|---|---|---|---|\n")
	for _, c := range boundCases {
		zs := make([]float64, healthy)
		parallel(healthy, workers, func(i int) { zs[i] = boundZ(c, 1, uint64(1_000_000+i)) })
		sort.Float64s(zs)
		q := zs[int(0.99*healthy)]
		caught := make([]bool, regressed)
		parallel(regressed, workers, func(i int) { caught[i] = boundZ(c, c.errMult, uint64(5_000_000+i)) > q })
		clean := "—"
		if c.family != "clean" {
			cc := c
			cc.family = "clean"
			onClean := make([]bool, regressed)
			parallel(regressed, workers, func(i int) { onClean[i] = boundZ(cc, c.errMult, uint64(5_000_000+i)) > q })
			clean = fmt.Sprintf("%.0f%%", 100*share(onClean))
		}
		fmt.Fprintf(&out, "| %s (%s) | %g | %g%% | %g× errors | %d s | %.2f | %.0f%% | %s |\n", c.family, c.description, c.rps, 100*c.share, c.errMult, c.secs, q, 100*share(caught), clean)
	}
	return strings.Replace(out.String(), "(0 s on", fmt.Sprintf("(%.0f s on", time.Since(start).Seconds()), 1)
}

func share(v []bool) float64 {
	n := 0
	for _, b := range v {
		if b {
			n++
		}
	}
	return float64(n) / float64(len(v))
}
