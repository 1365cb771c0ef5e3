package sim

import (
	"math"
	"math/rand/v2"
	"testing"
)

func TestPoissonMoments(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, lam := range []float64{0.3, 4, 25, 400} {
		const n = 20000
		var s, s2 float64
		for i := 0; i < n; i++ {
			x := Poisson(r, lam)
			s += x
			s2 += x * x
		}
		mean := s / n
		v := s2/n - mean*mean
		if math.Abs(mean-lam) > 4*math.Sqrt(lam/n) || math.Abs(v/lam-1) > 0.06 {
			t.Errorf("Poisson(%g): mean %.3f variance %.3f", lam, mean, v)
		}
	}
}

func TestDeterministicAndShaped(t *testing.T) {
	sc := Scenario{RPS: 100, ErrorMult: 5, LatencyMult: 2, VaryTraffic: true, Seed: 9}
	a, b := New(sc), New(sc)
	var ba, ca, bb, cb = a.baseline, a.canary, b.baseline, b.canary
	for i := 0; i < 180; i++ {
		ba, ca = a.Step()
		bb, cb = b.Step()
	}
	if ba.Requests != bb.Requests || ca.Errors != cb.Errors || ca.Latency.Counts[12] != cb.Latency.Counts[12] {
		t.Fatal("same seed, different streams")
	}
	// 180 s at 100 rps ×(1, 0.5, 2) per minute = 21,000 requests each.
	if math.Abs(ba.Requests-21000) > 600 || math.Abs(ca.Errors/ca.Requests-0.025) > 0.005 {
		t.Fatalf("baseline %v requests, canary error rate %v", ba.Requests, ca.Errors/ca.Requests)
	}
	if qb, qc := ba.Latency.Quantile(0.5), ca.Latency.Quantile(0.5); qc < 1.6*qb {
		t.Fatalf("medians %v vs %v, want canary ~2×", qb, qc)
	}
}
