package sim

import (
	"math"
	"testing"

	"github.com/sluice-mesh/sluice/analyzer/judge"
)

func run(st Stream, seconds int) (b, c []judge.ClusterStats) {
	s := NewStream(st)
	b, c = []judge.ClusterStats{zeroStats()}, []judge.ClusterStats{zeroStats()}
	for i := 0; i < seconds; i++ {
		x, y := s.Step()
		b, c = append(b, x), append(c, y)
	}
	return b, c
}

func TestStreamDeterministic(t *testing.T) {
	f, _ := FamilyByName("realistic")
	st := f.Stream
	st.RPS, st.Seed = 300, 11
	b1, c1 := run(st, 200)
	b2, c2 := run(st, 200)
	for i := range b1 {
		if b1[i].Requests != b2[i].Requests || c1[i].Errors != c2[i].Errors || c1[i].Latency.Count != c2[i].Latency.Count {
			t.Fatalf("second %d: same seed, different streams", i)
		}
	}
}

// TestFamiliesHealthyOnAverage: in every family a healthy canary has, over many seconds and
// seeds, the stable's error rate and latency tail — the families disturb the second-by-
// second picture, not the averages — while a 2× canary has twice the own error rate.
func TestFamiliesHealthyOnAverage(t *testing.T) {
	for _, f := range Families {
		var reqB, errB, reqC, errC, slowB, slowC, nB, nC float64
		for seed := uint64(0); seed < 6; seed++ {
			st := f.Stream
			st.RPS, st.CanaryShare, st.Seed = 800, 0.3, seed
			s := NewStream(st)
			for i := 0; i < 600; i++ {
				s.Step()
			}
			b, c := s.True()
			reqB, errB, reqC, errC = reqB+b.Requests, errB+b.Errors, reqC+c.Requests, errC+c.Errors
			i := boundIndex(0.15)
			slowB += b.Latency.Count - b.Latency.Counts[i]
			slowC += c.Latency.Count - c.Latency.Counts[i]
			nB, nC = nB+b.Latency.Count, nC+c.Latency.Count
		}
		rb, rc := errB/reqB, errC/reqC
		sb, sc := slowB/nB, slowC/nC
		// A slow or strong wander of each cluster's own averages out slowly: allow four
		// standard errors of the ratio of the two time averages (TestNoiseMeanOne checks
		// the multiplier's mean itself); a drift of latency moves the share beyond
		// 150 ms about four times as much.
		tolErr, tolSlow := 0.12+4*noiseSE(f.Stream.ErrorNoise, 6*600), 0.15+4*noiseSE(f.Stream.LatencyNoise, 6*600)*4
		t.Logf("%-13s error rate stable %.4f canary %.4f; share slower than 150 ms %.4f / %.4f; canary traffic share %.3f",
			f.Name, rb, rc, sb, sc, reqC/(reqB+reqC))
		if math.Abs(rc/rb-1) > tolErr {
			t.Errorf("%s: healthy canary error rate %.4f vs stable %.4f", f.Name, rc, rb)
		}
		if math.Abs(sc/sb-1) > tolSlow {
			t.Errorf("%s: healthy canary slow share %.4f vs stable %.4f", f.Name, sc, sb)
		}
		if math.Abs(reqC/(reqB+reqC)-0.3) > 0.01 {
			t.Errorf("%s: canary share %.3f", f.Name, reqC/(reqB+reqC))
		}
	}
}

// noiseSE is the standard error of the log ratio of the two clusters' time averages of a
// Noise multiplier over secs seconds each (0 when shared: the ratio is exact).
func noiseSE(n Noise, secs float64) float64 {
	if n.Sigma <= 0 || n.Shared {
		return 0
	}
	return math.Sqrt(2 * math.Expm1(n.Sigma*n.Sigma) * (2*n.Corr + 1) / secs)
}

// TestNoiseMeanOne: a Noise multiplier exp(u − σ²/2) has mean 1 whatever its σ and
// correlation time, so a noisy healthy canary is healthy on average.
func TestNoiseMeanOne(t *testing.T) {
	s := NewStream(Stream{RPS: 1, Seed: 3})
	for _, n := range []Noise{{Sigma: 0.3, Corr: 30}, {Sigma: 0.5}, {Sigma: 0.5, Corr: 120}, {Sigma: 1, Corr: 30}} {
		const steps = 2_000_000
		u, sum := s.rng.NormFloat64()*n.Sigma, 0.0
		for i := 0; i < steps; i++ {
			sum += multiplier(u, n.Sigma)
			u = s.ou(u, n.Sigma, n.Corr)
		}
		se := math.Sqrt(math.Expm1(n.Sigma*n.Sigma) * (2*n.Corr + 1) / steps)
		if m := sum / steps; math.Abs(m-1) > 4*se {
			t.Errorf("σ %g, correlation %g s: mean multiplier %.4f, want 1 ± %.4f", n.Sigma, n.Corr, m, 4*se)
		}
	}
}

// boundIndex returns the index of the first bucket bound at or above v.
func boundIndex(v float64) int {
	for i, b := range Buckets {
		if b >= v {
			return i
		}
	}
	return len(Buckets) - 1
}

func TestRegressionMultipliesOwnErrors(t *testing.T) {
	st := Stream{RPS: 2000, CanaryShare: 0.5, ErrorMult: 2, LatencyMult: 2, Seed: 3}
	s := NewStream(st)
	for i := 0; i < 300; i++ {
		s.Step()
	}
	b, c := s.True()
	if r := (c.Errors / c.Requests) / (b.Errors / b.Requests); math.Abs(r-2) > 0.15 {
		t.Fatalf("error ratio %.3f, want 2", r)
	}
	if r := c.Latency.Quantile(0.5) / b.Latency.Quantile(0.5); math.Abs(r-2) > 0.2 {
		t.Fatalf("median ratio %.3f, want 2", r)
	}
}

// TestOutagesSharedWithEdgesApart: outages raise both clusters' error rates, each seeing
// the edges at slightly different seconds.
func TestOutagesSharedWithEdgesApart(t *testing.T) {
	st := Stream{RPS: 2000, CanaryShare: 0.5, Outages: outages(3), Seed: 5}
	b, c := run(st, 600)
	high := func(h []judge.ClusterStats, i int) bool {
		return (h[i].Errors-h[i-1].Errors)/(h[i].Requests-h[i-1].Requests) > 0.1
	}
	both, onlyOne := 0, 0
	for i := 1; i < len(b); i++ {
		hb, hc := high(b, i), high(c, i)
		switch {
		case hb && hc:
			both++
		case hb != hc:
			onlyOne++
		}
	}
	t.Logf("seconds in outage: both %d, one cluster only %d", both, onlyOne)
	if both < 20 || onlyOne == 0 || onlyOne > both {
		t.Fatalf("both %d, only one %d: want shared outages with misaligned edges", both, onlyOne)
	}
}

// TestPodPausesHitTheSingleCanaryPodWhole: with one canary pod, a pause delays every canary
// request for a second or more; with nine stable pods, about a ninth of them.
func TestPodPausesHitTheSingleCanaryPodWhole(t *testing.T) {
	st := Stream{RPS: 1000, CanaryShare: 0.5, Pods: Pods{Canary: 1, Stable: 9, PauseEvery: 30, MinPause: 1, MaxPause: 3}, Seed: 8}
	b, c := run(st, 600)
	maxSlow := func(h []judge.ClusterStats) float64 {
		m := 0.0
		for i := 1; i < len(h); i++ {
			j := boundIndex(0.5)
			n := h[i].Latency.Count - h[i-1].Latency.Count
			slow := n - (h[i].Latency.Counts[j] - h[i-1].Latency.Counts[j])
			m = math.Max(m, slow/n)
		}
		return m
	}
	mb, mc := maxSlow(b), maxSlow(c)
	t.Logf("largest share of a second's requests slower than 0.5 s: stable %.2f, canary %.2f", mb, mc)
	if mc < 0.9 || mb > 0.5 {
		t.Fatalf("stable %.2f canary %.2f", mb, mc)
	}
}

// TestScrapeShowsStepsAtOwnPhase: scraped counters change only every ScrapeInterval
// seconds, each cluster at its own phase, and equal the true counters at the scrape.
func TestScrapeShowsStepsAtOwnPhase(t *testing.T) {
	for seed := uint64(0); seed < 5; seed++ {
		st := Stream{RPS: 500, ScrapeInterval: 15, Seed: seed}
		s := NewStream(st)
		var prevB, prevC float64
		var changesB, changesC []int
		for i := 1; i <= 120; i++ {
			b, c := s.Step()
			if b.Requests != prevB {
				changesB = append(changesB, i)
			}
			if c.Requests != prevC {
				changesC = append(changesC, i)
			}
			prevB, prevC = b.Requests, c.Requests
		}
		for _, ch := range [][]int{changesB, changesC} {
			for k := 1; k < len(ch); k++ {
				if ch[k]-ch[k-1] != 15 {
					t.Fatalf("seed %d: counter changes at %v, want every 15 s", seed, ch)
				}
			}
		}
		if len(changesB) < 7 || len(changesC) < 7 {
			t.Fatalf("changes %v %v", changesB, changesC)
		}
	}
}

// TestOverdispersion: per-second error counts vary about as a Poisson count with a
// log-normal mean (σ 1): variance λ + λ²(e^{σ²}−1), far above λ.
func TestOverdispersion(t *testing.T) {
	st := Stream{RPS: 2000, CanaryShare: 0.5, ErrorNoise: Noise{Sigma: 1}, Seed: 4}
	b, _ := run(st, 3000)
	var xs []float64
	for i := 1; i < len(b); i++ {
		xs = append(xs, b[i].Errors-b[i-1].Errors)
	}
	m, v := meanVar(xs)
	want := m + m*m*(math.E-1)
	t.Logf("per-second errors: mean %.2f variance %.2f (Poisson %.2f, model %.2f)", m, v, m, want)
	if math.Abs(m-5) > 0.5 || v < 0.7*want || v > 1.3*want {
		t.Fatalf("mean %.2f variance %.2f, want ~5 and ~%.1f", m, v, want)
	}
}

func meanVar(xs []float64) (float64, float64) {
	var s, ss float64
	for _, x := range xs {
		s += x
	}
	m := s / float64(len(xs))
	for _, x := range xs {
		ss += (x - m) * (x - m)
	}
	return m, ss / float64(len(xs)-1)
}
