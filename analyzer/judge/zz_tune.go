package judge

import (
	"os"
	"strconv"
)

// EXPERIMENT (removed in the next commit): tuning knobs of the in-session wander
// measurement, read from J_<NAME> environment variables so that go run ./bench/judge can
// sweep them. MODE 0: bridge of the difference of the clusters' relative rates; 1: each
// cluster's own bridge pooled by precision, minus the shared cross term; 2: 1, confirmed
// by the difference (DGATE). SLACK: gate in multiples of the Poisson energy; MINEV:
// events a cluster needs; HOLD: fading of the held rate (0: ratchet); R: variance-of-mean
// factor; MARGIN; RATCHET 0: no hold at all.
var tune = map[string]float64{}

func init() {
	for _, k := range []string{"SLACK", "MARGIN", "SHARED", "KAT", "MODE", "PRIOR", "PRIORT", "R", "RATCHET", "MINEV", "HOLD", "DGATE", "OLDW", "WT", "WM"} {
		if v, err := strconv.ParseFloat(os.Getenv("J_"+k), 64); err == nil {
			tune[k] = v
		}
	}
}

func tv(k string, def float64) float64 {
	if v, ok := tune[k]; ok {
		return v
	}
	return def
}
