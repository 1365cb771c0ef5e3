package judge

import "math"

// This file holds the sequential test both signals share: a mixture sequential
// probability ratio test on two Poisson counting processes (Lindon, Sanden, Shirikian,
// KDD 2022), written in its conditional form.
//
// In each update interval i the canary sees c_i requests and x_i "bad" events (errors, or
// requests slower than a threshold), the baseline b_i requests and y_i bad events. With
// bad events arriving as Poisson processes with rates p_c·c_i and p_b·b_i, the canary's
// share of the E_i = x_i + y_i bad events is Binomial(E_i, θ_i(ρ)) with
//
//	θ_i(ρ) = ρ·c_i / (ρ·c_i + b_i),   ρ = p_c / p_b,
//
// whatever the nuisance rate p_b and however the traffic split changes between intervals.
// For an alternative ρ1 against a null boundary ρ0 the interval's likelihood ratio is
//
//	LR_i = (ρ1/ρ0)^x_i · ((ρ0·c_i + b_i) / (ρ1·c_i + b_i))^E_i .
//
// For ρ1 > ρ0 its conditional expectation is exactly 1 at ρ = ρ0 and below 1 for every
// ρ < ρ0, so the running product is a non-negative supermartingale under the whole
// composite null ρ ≤ ρ0 (the mirror image holds for ρ1 < ρ0 and the null ρ ≥ ρ0). An
// equal-weight mixture over a grid of alternatives is still one, and Ville's inequality
// bounds the chance that it ever exceeds 1/α by α: the test may be looked at after every
// request, or every second, and stopped whenever, without inflating its error rate.
// (Conditioning on request counts instead of Poisson exposure makes the canary's count
// hypergeometric rather than binomial at ρ = 1, which is less dispersed, so the bound
// stays conservative.)

// gridStep is the ratio between neighbouring points of the alternative and confidence
// grids: 2^(1/4) ≈ 1.19.
var gridStep = math.Pow(2, 0.25)

// failKappas and passKappas are the alternatives mixed over, as powers of gridStep
// relative to the null boundary: ρ1 = ρ0·gridStep^k. Fail covers 1.19× to 22.6× the
// boundary, pass 0.84× to 0.25×.
var (
	failKappas = []int{1, 2, 4, 6, 8, 11, 14, 18}
	passKappas = []int{-1, -2, -3, -4, -6, -8}
)

// csSteps is how many grid steps either side of the boundary the confidence sequence
// covers: gridStep^±24 = 64× either way.
const csSteps = 24

// seqRatio is one side (fail: alternatives above ρ0; pass: below) of the mixture test for
// the rate ratio ρ, with the null boundary at ρ0 and a confidence sequence on a grid
// ρ0·gridStep^k, k in [-csSteps, csSteps].
type seqRatio struct {
	rho0   float64
	kappas []int
	// logLR[k+csSteps][j] is the log likelihood ratio of alternative
	// ρ0·gridStep^(k+kappas[j]) against the null boundary ρ0·gridStep^k.
	logLR [][]float64
	lnLev []float64 // scratch: ln(ρ·c + b) by grid level
	minLv int       // grid level of lnLev[0]
}

func newSeqRatio(rho0 float64, kappas []int) *seqRatio {
	s := &seqRatio{rho0: rho0, kappas: kappas, logLR: make([][]float64, 2*csSteps+1)}
	for i := range s.logLR {
		s.logLR[i] = make([]float64, len(kappas))
	}
	lo, hi := 0, 0
	for _, k := range kappas {
		lo, hi = min(lo, k), max(hi, k)
	}
	s.minLv = -csSteps + lo
	s.lnLev = make([]float64, (csSteps+hi)-s.minLv+1)
	return s
}

// add feeds one interval: canary requests c, baseline requests b, the canary's bad events
// x and all bad events e (canary plus baseline).
func (s *seqRatio) add(c, b, x, e float64) {
	if e <= 0 || c <= 0 || b <= 0 {
		return // no events, or one side without exposure: no information about ρ
	}
	lnStep := math.Log(gridStep)
	for i := range s.lnLev {
		rho := s.rho0 * math.Exp(float64(s.minLv+i)*lnStep)
		s.lnLev[i] = math.Log(rho*c + b)
	}
	for k := -csSteps; k <= csSteps; k++ {
		row := s.logLR[k+csSteps]
		l0 := s.lnLev[k-s.minLv]
		for j, d := range s.kappas {
			row[j] += x*float64(d)*lnStep + e*(l0-s.lnLev[k+d-s.minLv])
		}
	}
}

// logMixture returns the log of the mixture likelihood ratio against boundary
// ρ0·gridStep^k.
func (s *seqRatio) logMixture(k int) float64 {
	return logMeanExp(s.logLR[k+csSteps])
}

// evidence is the log mixture likelihood ratio against the null boundary ρ0 itself.
func (s *seqRatio) evidence() float64 { return s.logMixture(0) }

// boundAt returns the grid value ρ0·gridStep^k.
func (s *seqRatio) boundAt(k int) float64 { return s.rho0 * math.Pow(gridStep, float64(k)) }

// lowerBound (fail side) is the largest grid ratio the data reject at level α: an
// anytime-valid lower confidence bound for ρ, rounded down to the grid. 0 when none.
func (s *seqRatio) lowerBound(alpha float64) float64 {
	thr := math.Log(1 / alpha)
	// The evidence against ρ0·gridStep^k falls as k grows: binary search for the last
	// rejected k.
	lo, hi := -csSteps, csSteps
	if s.logMixture(lo) < thr {
		return 0
	}
	for lo < hi {
		mid := lo + (hi-lo+1)/2
		if s.logMixture(mid) >= thr {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	return s.boundAt(lo)
}

// upperBound (pass side) is the smallest grid ratio the data reject at level α: an
// anytime-valid upper confidence bound for ρ, rounded up to the grid. 0 when none (no
// finite bound yet).
func (s *seqRatio) upperBound(alpha float64) float64 {
	thr := math.Log(1 / alpha)
	// The evidence against ρ0·gridStep^k grows with k: binary search for the first
	// rejected k.
	lo, hi := -csSteps, csSteps
	if s.logMixture(hi) < thr {
		return 0
	}
	for lo < hi {
		mid := lo + (hi-lo)/2
		if s.logMixture(mid) >= thr {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return s.boundAt(lo)
}

// seqRate is the one-sample mixture test of a Bernoulli rate p against a boundary p0:
// fail side alternatives above p0, pass side below. Used for the absolute error floor.
type seqRate struct {
	p0     float64
	kappas []float64
	logLR  []float64
}

func newSeqRate(p0 float64, kappas []float64) *seqRate {
	return &seqRate{p0: p0, kappas: kappas, logLR: make([]float64, len(kappas))}
}

// add feeds n trials with x successes (errors).
func (s *seqRate) add(n, x float64) {
	if n <= 0 || s.p0 <= 0 || s.p0 >= 1 {
		return
	}
	x = math.Min(x, n)
	for j, k := range s.kappas {
		p1 := math.Min(s.p0*k, 0.999999)
		s.logLR[j] += x*math.Log(p1/s.p0) + (n-x)*math.Log((1-p1)/(1-s.p0))
	}
}

func (s *seqRate) evidence() float64 { return logMeanExp(s.logLR) }

var (
	floorFailKappas = []float64{1.5, 2, 3, 5, 10, 30, 100}
	floorPassKappas = []float64{0.7, 0.5, 0.3, 0.1}
)

// logMeanExp returns log(mean(exp(v))) without overflow.
func logMeanExp(v []float64) float64 {
	m := math.Inf(-1)
	for _, x := range v {
		m = math.Max(m, x)
	}
	if math.IsInf(m, -1) {
		return m
	}
	sum := 0.0
	for _, x := range v {
		sum += math.Exp(x - m)
	}
	return m + math.Log(sum/float64(len(v)))
}
