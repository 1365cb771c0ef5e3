// Package sim is a deterministic, seeded simulator of request streams for a stable
// (baseline) and a canary cluster, producing the cumulative counters the judge and the
// threshold templates read. It simulates counts, not individual requests: requests are
// Poisson processes, so every second each cluster's errors, successes and latency-bucket
// counts are independent Poisson draws.
package sim

import (
	"math"
	"math/rand/v2"

	"github.com/sluice-mesh/sluice/analyzer/judge"
)

// Buckets are the latency histogram bounds (seconds), the same as Sluice's router uses.
var Buckets = []float64{
	0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075,
	0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1, 1.5, 2.5, 5, 10,
}

// Scenario describes one simulated canary.
type Scenario struct {
	// RPS is the request rate each cluster receives (before the traffic pattern).
	RPS float64
	// BaseErrorRate is the stable cluster's error rate (default 0.005).
	BaseErrorRate float64
	// ErrorMult multiplies the canary's error rate (default 1).
	ErrorMult float64
	// LatencyMult multiplies every canary latency (default 1).
	LatencyMult float64
	// LatencyMedian (default 0.050 s) and LatencySigma (default 0.5) are the log-normal
	// latency's median and log-space standard deviation.
	LatencyMedian, LatencySigma float64
	// ColdStart adds a spike to the canary's first ColdStartSeconds (default 30): error
	// rate ×ColdStartErrorMult (default 10) and latency ×ColdStartLatencyMult (default 3)
	// at t=0, decaying linearly to nothing.
	ColdStart            bool
	ColdStartSeconds     float64
	ColdStartErrorMult   float64
	ColdStartLatencyMult float64
	// VaryTraffic halves and doubles traffic: ×1 for a minute, ×0.5 for a minute, ×2 for
	// a minute, repeating.
	VaryTraffic bool
	// Seed makes the run reproducible.
	Seed uint64
}

func (sc Scenario) withDefaults() Scenario {
	def := func(v *float64, d float64) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&sc.BaseErrorRate, 0.005)
	def(&sc.ErrorMult, 1)
	def(&sc.LatencyMult, 1)
	def(&sc.LatencyMedian, 0.050)
	def(&sc.LatencySigma, 0.5)
	def(&sc.ColdStartSeconds, 30)
	def(&sc.ColdStartErrorMult, 10)
	def(&sc.ColdStartLatencyMult, 3)
	return sc
}

// Sim advances both clusters one second at a time.
type Sim struct {
	sc       Scenario
	rng      *rand.Rand
	t        float64
	baseline judge.ClusterStats
	canary   judge.ClusterStats
}

// New starts a simulation at t=0 with zero counters.
func New(sc Scenario) *Sim {
	sc = sc.withDefaults()
	s := &Sim{sc: sc, rng: rand.New(rand.NewPCG(sc.Seed, 0x5eed_ca7a_1e57))}
	s.baseline = zeroStats()
	s.canary = zeroStats()
	return s
}

func zeroStats() judge.ClusterStats {
	return judge.ClusterStats{Latency: judge.Histogram{Bounds: Buckets, Counts: make([]float64, len(Buckets))}}
}

// Now returns the simulated seconds elapsed.
func (s *Sim) Now() float64 { return s.t }

// TrafficMult returns the traffic multiplier at second t.
func (s *Sim) TrafficMult(t float64) float64 {
	if !s.sc.VaryTraffic {
		return 1
	}
	switch int(t/60) % 3 {
	case 1:
		return 0.5
	case 2:
		return 2
	}
	return 1
}

// Step advances one second and returns both clusters' cumulative counters. The returned
// values are copies the caller may keep.
func (s *Sim) Step() (baseline, canary judge.ClusterStats) {
	sc := s.sc
	lam := sc.RPS * s.TrafficMult(s.t)
	errM, latM := sc.ErrorMult, sc.LatencyMult
	if sc.ColdStart && s.t < sc.ColdStartSeconds {
		w := 1 - (s.t+0.5)/sc.ColdStartSeconds
		errM *= 1 + (sc.ColdStartErrorMult-1)*w
		latM *= 1 + (sc.ColdStartLatencyMult-1)*w
	}
	s.baseline = s.draw(s.baseline, lam, sc.BaseErrorRate, 1)
	s.canary = s.draw(s.canary, lam, math.Min(sc.BaseErrorRate*errM, 1), latM)
	s.t++
	return clone(s.baseline), clone(s.canary)
}

// draw adds one second of traffic at rate lam with error rate p and latency ×latM.
func (s *Sim) draw(c judge.ClusterStats, lam, p, latM float64) judge.ClusterStats {
	e := Poisson(s.rng, lam*p)
	ok := Poisson(s.rng, lam*(1-p))
	c.Requests += e + ok
	c.Errors += e
	// Latency: an independent Poisson stream at the same rate, bucket by bucket.
	mu := math.Log(s.sc.LatencyMedian * latM)
	prev, cum := 0.0, 0.0
	for i, b := range Buckets {
		cdf := 0.5 * math.Erfc(-(math.Log(b)-mu)/(s.sc.LatencySigma*math.Sqrt2))
		cum += Poisson(s.rng, lam*(cdf-prev))
		c.Latency.Counts[i] += cum
		prev = cdf
	}
	c.Latency.Count += cum + Poisson(s.rng, lam*(1-prev))
	return c
}

func clone(c judge.ClusterStats) judge.ClusterStats {
	c.Latency.Counts = append([]float64(nil), c.Latency.Counts...)
	return c
}

// Poisson draws a Poisson(lam) variate: multiplication below 10, else the PTRS
// transformed-rejection method (Hörmann 1993), as numpy does.
func Poisson(r *rand.Rand, lam float64) float64 {
	if lam <= 0 {
		return 0
	}
	if lam < 10 {
		l, p, k := math.Exp(-lam), 1.0, 0.0
		for {
			p *= r.Float64()
			if p <= l {
				return k
			}
			k++
		}
	}
	slam, loglam := math.Sqrt(lam), math.Log(lam)
	b := 0.931 + 2.53*slam
	a := -0.059 + 0.02483*b
	invalpha := 1.1239 + 1.1328/(b-3.4)
	vr := 0.9277 - 3.6224/(b-2)
	for {
		u := r.Float64() - 0.5
		v := r.Float64()
		us := 0.5 - math.Abs(u)
		k := math.Floor((2*a/us+b)*u + lam + 0.43)
		if us >= 0.07 && v <= vr {
			return k
		}
		if k < 0 || (us < 0.013 && v > us) {
			continue
		}
		lg, _ := math.Lgamma(k + 1)
		if math.Log(v)+math.Log(invalpha)-math.Log(a/(us*us)+b) <= -lam+k*loglam-lg {
			return k
		}
	}
}
