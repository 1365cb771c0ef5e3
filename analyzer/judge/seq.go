package judge

import "math"

// This file holds the one-sided sequential test every comparison uses (see the package
// doc): "the mean of the block scores is at most 0", a mixture of betting
// supermartingales.
//
// A block score is z = up·X − down·Y − c: X and Y are counts (events that push the score up
// in jumps of up, and down in jumps of down) and c a constant. For a bet λ ≥ 0 a block
// multiplies the wealth by
//
//	exp(min(λ·z' − φ·[vUp·g(λ·up) + vDown·g(−λ·down)], cap)) ,   g(s) = e^s − 1 − s ,
//
// with vUp and vDown the counts' Poisson variances (expected counts) at the null boundary
// and φ ≥ 1 the dispersion. With Poisson counts and φ = 1, exp(λz − ψ(λ)) is the exponential
// martingale of the centred score (ψ is the cumulant of its counts), so its expectation
// is exp(λ·E[z]) ≤ 1 under the null; the cumulant is largest at the null boundary, so
// the whole composite null is covered. Capping a block's gain, or clipping z' from above,
// only lowers the factor and never breaks the bound. The lower clip of z' (a block
// counts at most lowerClipSD standard deviations plus lowerClipJumps whole events
// against the alternative) is the one approximation in the favourable direction: under
// Poisson counts it practically never binds; it keeps an outage edge the baseline sees
// first from erasing minutes of evidence of a real regression. The Pass side does
// without it.
//
// φ is measured from earlier blocks: squared Pearson residuals of the scores (each block's
// residual clipped at huberSD standard deviations, so a burst adds little to a long batch
// while a slow wander, which moves every block a little, adds fully), summed over batches
// of 1, 5, 15 and 60 s, each batch counting at most its scale's cap, with a prior of
// dispersionPrior batches at φ = 1, only the excess beyond dispersionSlack standard
// deviations of what Poisson counts give, and a memory that lets it relax after a
// disturbance.
//
// The bets λ are a fixed grid in units of 1/σ₁, σ₁ the model standard deviation of one
// second's score from earlier blocks; the grid is equally weighted, which costs
// log(len(betSizes)) nats of evidence and lets the test adapt to any effect size.

// betSizes are the bets mixed over, in units of 1/σ₁ (see above).
var betSizes = []float64{0.1, 0.15, 0.225, 0.34, 0.5, 0.76, 1.14, 1.7, 2.56}

// Tuning of the robust test (see the comment above); bench/README.md shows their effect.
const (
	gainCap         = 1.5  // most log-evidence one block adds to one bet
	extremeGainCap  = 0.75 // the same for a block with a burst or beyond upperClipSD
	upperClipSD     = 3.0
	upperClipJumps  = 2.0
	lowerClipSD     = 4.0
	lowerClipJumps  = 3.0
	dispersionPrior = 4.0
	huberSD         = 4.0 // scores are clipped to ±huberSD sd for the excess estimate
	dispersionSlack = 1.5
)

// dispersionScales are the batch lengths over which dispersion is measured, with how long
// each remembers (seconds).
var dispersionScales = []struct{ secs, memory, cap float64 }{{1, 180, 16}, {5, 300, 25}, {15, 900, 50}, {60, 1800, 100}}

// TestState is the state of one one-sided sequential test (see seq.go). It is part of
// SessionState; its fields are not meant to be set by hand.
type TestState struct {
	// LogW is the log wealth of each bet in betSizes.
	LogW []float64 `json:"logW"`
	// LamH is Σ λ·h for each bet: how the log wealth moves per unit of excess (bounds).
	LamH []float64 `json:"lamH"`
	// SumZ and SumH: the clipped scores and their weights, SumZ/SumH estimates the excess.
	SumZ float64 `json:"sumZ"`
	SumH float64 `json:"sumH"`
	// SumP and SumSecs: model variance and seconds of the blocks so far (the bet scale).
	SumP    float64 `json:"sumP"`
	SumSecs float64 `json:"sumSecs"`
	// Scales is the dispersion measurement at each of dispersionScales.
	Scales []ScaleState `json:"scales"`
	// Blocks counts the blocks fed.
	Blocks int `json:"blocks"`
}

// ScaleState measures dispersion at one batch length: the open batch and the decayed
// sums of capped squared Pearson residuals of the closed ones.
type ScaleState struct {
	E    float64 `json:"e"`
	P    float64 `json:"p"`
	Secs float64 `json:"secs"`
	Sum  float64 `json:"sum"`
	N    float64 `json:"n"`
}

func newTestState() *TestState {
	return &TestState{
		LogW:   make([]float64, len(betSizes)),
		LamH:   make([]float64, len(betSizes)),
		Scales: make([]ScaleState, len(dispersionScales)),
	}
}

// score is one block's input to a one-sided test: z = up·X − down·Y − c with
// Var(X) = vUp, Var(Y) = vDown under Poisson counts; h is the weight of the excess in z
// (z moves by h per unit of excess); secs is the block's length.
type score struct {
	z, h     float64
	up, down float64
	vUp      float64
	vDown    float64
	// obs is z's Poisson variance at the rates observed so far (not at the null
	// boundary): what dispersion is measured against.
	obs  float64
	secs float64
	// noLowerClip keeps the lower tail whole (see lowerClipSD).
	noLowerClip bool
	// extreme: a count was cut back to its usual level (a burst): the block adds at most
	// extremeGainCap.
	extreme bool
	// minPhi is a floor for the dispersion (Config.Wander).
	minPhi float64
}

func (sc score) variance() float64 { return sc.up*sc.up*sc.vUp + sc.down*sc.down*sc.vDown }

// g(s) = e^s − 1 − s, the Poisson cumulant per unit mean of a jump of size s; s is capped
// so it stays finite (a bet that large has long lost everything).
func g(s float64) float64 {
	s = math.Min(s, 40)
	if math.Abs(s) < 1e-4 {
		return s * s / 2
	}
	return math.Expm1(s) - s
}

// dispersion is the current estimate of φ (≥ 1), from earlier blocks only.
func (t *TestState) dispersion() float64 {
	phi := 1.0
	for _, sc := range t.Scales {
		// Only the excess over what Poisson counts give (N batches: mean N, sd √(2N))
		// beyond dispersionSlack standard deviations counts.
		excess := sc.Sum - sc.N - dispersionSlack*math.Sqrt(2*sc.N)
		phi = math.Max(phi, 1+math.Max(0, excess)/(dispersionPrior+sc.N))
	}
	return phi
}

// excess is the current estimate of the mean score per unit weight.
func (t *TestState) excess() float64 {
	if t.SumH <= 0 {
		return 0
	}
	return t.SumZ / t.SumH
}

// add feeds one block.
func (t *TestState) add(sc score) {
	p := sc.variance()
	if p <= 0 && sc.z == 0 {
		return
	}
	phi := math.Max(t.dispersion(), sc.minPhi)
	sd := math.Sqrt(phi * p)
	// Bet scale: model sd of one second's score, from earlier blocks when there are any.
	unit := math.Sqrt(p / math.Max(sc.secs, 1e-9))
	if t.SumSecs > 0 && t.SumP > 0 {
		unit = math.Sqrt(t.SumP / t.SumSecs)
	}
	if unit <= 0 {
		unit = 1
	}
	// A drift floor (Config.Wander) can make the variance hundreds of times Poisson's:
	// the bets are scaled to the standard deviation it implies, or even the smallest
	// would overshoot.
	unit *= math.Sqrt(math.Max(1, sc.minPhi))
	// An extreme block (beyond the upper clip: an outage edge, a stalled pod, or a
	// regression so strong that one block is not needed to see it) adds less.
	capG := gainCap
	if sc.extreme {
		capG = extremeGainCap
	}
	zl := sc.z
	if hi := upperClipSD*sd + upperClipJumps*sc.up; zl > hi {
		zl, capG = hi, extremeGainCap
	}
	if !sc.noLowerClip {
		zl = math.Max(zl, -(lowerClipSD*sd + lowerClipJumps*sc.down))
	}
	for i, b := range betSizes {
		lam := b / unit
		psi := phi * (sc.vUp*g(lam*sc.up) + sc.vDown*g(-lam*sc.down))
		t.LogW[i] += math.Min(lam*zl-psi, capG)
		t.LamH[i] += lam * sc.h
	}
	// The excess estimate and the residuals for the dispersion.
	obs := sc.obs
	if obs <= 0 {
		obs = p
	}
	// A block's residual counts at most huberSD standard deviations: a burst adds little
	// to a long batch, while a slow wander, which moves every block a little, adds fully.
	lim := huberSD*math.Sqrt(phi*obs) + lowerClipJumps*math.Max(sc.up, sc.down)
	e := math.Max(-lim, math.Min(sc.z-sc.h*t.excess(), lim))
	for i, ds := range dispersionScales {
		st := &t.Scales[i]
		decay := math.Exp(-sc.secs / ds.memory)
		st.Sum *= decay
		st.N *= decay
		st.E += e
		st.P += obs
		st.Secs += sc.secs
		if st.Secs >= ds.secs-1e-9 {
			if st.P > 0 {
				st.Sum += math.Min(st.E*st.E/st.P, ds.cap)
				st.N++
			}
			st.E, st.P, st.Secs = 0, 0, 0
		}
	}
	hub := huberSD*sd + lowerClipJumps*math.Max(sc.up, sc.down)
	t.SumZ += math.Max(-hub, math.Min(sc.z, hub))
	t.SumH += sc.h
	t.SumP += p
	t.SumSecs += sc.secs
	t.Blocks++
}

// evidence is the log of the mixture e-value against the null boundary.
func (t *TestState) evidence() float64 { return logMeanExp(t.LogW) }

// evidenceShifted is the log mixture e-value against a null boundary moved by delta (in
// units of the excess): each bet's log wealth moves by −delta·Σλh. It ignores that the
// clipping and the cap would have acted differently, so it is for reporting bounds only.
func (t *TestState) evidenceShifted(delta float64) float64 {
	v := make([]float64, len(t.LogW))
	for i := range v {
		v[i] = t.LogW[i] - delta*t.LamH[i]
	}
	return logMeanExp(v)
}

// clone returns a deep copy.
func (t *TestState) clone() *TestState {
	if t == nil {
		return nil
	}
	c := *t
	c.LogW = append([]float64(nil), t.LogW...)
	c.LamH = append([]float64(nil), t.LamH...)
	c.Scales = append([]ScaleState(nil), t.Scales...)
	return &c
}

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
