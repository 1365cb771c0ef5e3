package judge

import "math"

// This file measures wander: each cluster's rate drifting on its own over tens of seconds
// or minutes, so that a healthy canary is, for a while, worse (or better) than its stable.
//
// For each cluster, the bridge B(s) = X(s)/p − N(s) (X events and N exposure up to s, p
// the cluster's mean rate over the session) is how far its events so far stray from what
// its mean rate over the whole session gives. Poisson counts keep it to a Brownian-like
// bridge of known size; a rate that wanders makes it stray further. Its energy Σ secs·B²
// beyond the Poisson expectation, per squared request rate, measures how much the
// cluster's relative rate varies at the scale of the session (the KPSS statistic), the
// product of the two clusters' bridges what they share (a dependency both use): the rest
// is each cluster's own. None of it depends on the level: a canary at a steady 5× the
// stable's rate strays no more than a healthy one, and a wander both clusters share
// cancels.
//
// For a wander that forgets over τ seconds, the variance of the mean over t seconds is
// wanderRatio(t/τ)·6/t times the bridge energy: the factor is 7.9 at τ = t and falls to
// 1 as t/τ grows. The judge assumes τ ≤ t — a drift slower than it has watched is, in the
// data, the canary's level — and uses the factor for τ = t.

// Tuning of the wander measurement (bench/README.md shows their effect).
const (
	// wanderGate: the clusters' own bridge energy counts only beyond this many times what
	// Poisson counts give.
	wanderGate = 4.0
	// wanderRatio is Var(mean over t) / (6/t · bridge energy) for a wander with τ = t.
	wanderRatio = 7.9
	// wanderMargin: the measured wander's variance counts this many times.
	wanderMargin = 2.0
	// wanderMinEvents: a cluster's bridge counts once it holds this many events (fewer
	// are too skewed for the Poisson expectation to mean much).
	wanderMinEvents = 30
)

// WanderState is the wander measurement of one session (see wander.go). It is part of
// SessionState; its fields are not meant to be set by hand.
type WanderState struct {
	// C and B are the canary's and the baseline's bridge sums; X the sums of products
	// of their events and exposures weighted by seconds (see crossSums).
	C BridgeState `json:"c"`
	B BridgeState `json:"b"`
	X CrossSums   `json:"x"`
	// Secs is the seconds fed; M the sum of the blocks' sensitivities to a relative
	// wander (the score's change per unit of relative wander of the two clusters,
	// root mean square of the two sides).
	Secs float64 `json:"secs"`
	M    float64 `json:"m"`
	// Rate is the long-run variance rate of the mean relative difference held from the
	// measurement at RateAt seconds (the variance of the mean over t seconds is Rate/t):
	// a measurement is held, fading as the session grows past twice its age, so that a
	// wander seen once keeps counting while a later, calmer bridge has not yet outgrown
	// it.
	Rate   float64 `json:"rate"`
	RateAt float64 `json:"rateAt"`
}

// BridgeState is one cluster's cumulative events X and exposure N, and the sums over the
// blocks so far, each weighted by the block's seconds, of X², X·N, N² and N.
type BridgeState struct {
	X, N                 float64
	SXX, SXN, SNN, SN, S float64
}

// CrossSums are the sums over the blocks, weighted by seconds, of Xc·Xb, Xc·Nb, Nc·Xb and
// Nc·Nb.
type CrossSums struct {
	XX, XN, NX, NN float64
}

func newWanderState() *WanderState { return &WanderState{} }

func (w *WanderState) valid() bool { return w != nil }

func (w *WanderState) clone() *WanderState {
	if w == nil {
		return nil
	}
	c := *w
	return &c
}

func (b *BridgeState) add(x, n, secs float64) {
	b.X += x
	b.N += n
	b.SXX += secs * b.X * b.X
	b.SXN += secs * b.X * b.N
	b.SNN += secs * b.N * b.N
	b.SN += secs * b.N
	b.S += secs
}

// rate is the cluster's mean rate (half an event of prior).
func (b *BridgeState) rate() float64 { return (b.X + 0.5) / (b.N + 1) }

// energy returns the bridge energy Σ secs·(X/p − N)² and what Poisson counts give it, in
// units of the squared mean request rate (so in relative-rate terms: seconds³).
func (b *BridgeState) energy() (e, poisson float64) {
	if b.N <= 0 || b.S <= 0 {
		return 0, 0
	}
	p := b.rate()
	n2 := (b.N / b.S) * (b.N / b.S)
	e = b.SXX/(p*p) - 2*b.SXN/p + b.SNN
	poisson = (b.SN - b.SNN/b.N) / p
	return e / n2, poisson / n2
}

// add feeds one block: each cluster's events x out of exposure n and the block's
// sensitivity m. Blocks with a burst are left out of the bridges (the burst cut takes
// care of them).
func (w *WanderState) add(xc, nc, xb, nb, m, secs float64, burst bool) {
	w.M += m
	w.Secs += secs
	if burst || nc <= 0 || nb <= 0 {
		return
	}
	w.C.add(xc, nc, secs)
	w.B.add(xb, nb, secs)
	w.X.XX += secs * w.C.X * w.B.X
	w.X.XN += secs * w.C.X * w.B.N
	w.X.NX += secs * w.C.N * w.B.X
	w.X.NN += secs * w.C.N * w.B.N
	if now := w.measured() * w.C.S; now >= w.held() {
		w.Rate, w.RateAt = now, w.C.S
	}
}

// held is the held rate now.
func (w *WanderState) held() float64 {
	if w.RateAt <= 0 {
		return 0
	}
	k := tv("HOLD", 1)
	if k == 0 {
		return w.Rate
	}
	return w.Rate * math.Exp(-math.Max(0, w.C.S-w.RateAt)/(k*w.RateAt))
}

// shared is the bridges' cross energy in relative-rate terms, and its standard deviation
// when the clusters share nothing.
func (w *WanderState) shared() (e, sd float64) {
	if w.C.N <= 0 || w.B.N <= 0 || w.C.S <= 0 {
		return 0, 0
	}
	pc, pb := w.C.rate(), w.B.rate()
	e = w.X.XX/(pc*pb) - w.X.XN/pc - w.X.NX/pb + w.X.NN
	e /= (w.C.N / w.C.S) * (w.B.N / w.B.S)
	_, p0c := w.C.energy()
	_, p0b := w.B.energy()
	return e, 0.63 * math.Sqrt(p0c*p0b)
}

// own returns the energy of the bridge of the difference of the clusters' relative rates
// beyond what Poisson counts give: what each cluster wanders on its own (a wander they
// share cancels in the difference), counting only the part beyond wanderGate times the
// Poisson expectation (the energy of a Poisson bridge is skewed: it exceeds 3× its mean
// about 4% of the time, 4.5× about 1%).
func (w *WanderState) own() float64 {
	min := tv("MINEV", wanderMinEvents)
	if w.C.X < min || w.B.X < min {
		return 0
	}
	ec, pc := w.C.energy()
	eb, pb := w.B.energy()
	sh, _ := w.shared()
	if tv("MODE", 0) == 2 {
		// per-cluster magnitude, confirmed by the difference
		if ec+eb-2*sh < tv("DGATE", 2)*(pc+pb) {
			return 0
		}
		shc := math.Max(0, math.Min(sh, math.Min(ec-pc, eb-pb)))
		u, v := 1/(pc*pc), 1/(pb*pb)
		e := (u*(ec-shc) + v*(eb-shc)) / (u + v)
		p := (u*pc + v*pb) / (u + v)
		return 2 * math.Max(0, e-tv("SLACK", wanderGate)*p)
	}
	if tv("MODE", 0) == 1 {
		sh = math.Max(0, math.Min(sh, math.Min(ec-pc, eb-pb)))
		u, v := 1/(pc*pc), 1/(pb*pb)
		e := (u*(ec-sh) + v*(eb-sh)) / (u + v)
		p := (u*pc + v*pb) / (u + v)
		return 2 * math.Max(0, e-tv("SLACK", wanderGate)*p)
	}
	return math.Max(0, ec+eb-2*sh-tv("SLACK", wanderGate)*(pc+pb))
}

// meanVariance is the variance the wander gives the mean difference of the clusters'
// relative rates over the session so far; the canary is taken to wander at least as much
// as the baseline (a healthy canary does, and the baseline, usually the bigger cluster,
// shows it sooner).
func (w *WanderState) meanVariance() float64 {
	if w.C.S <= 0 {
		return 0
	}
	if tv("RATCHET", 1) == 0 {
		return w.measured()
	}
	return math.Max(w.held(), w.measured()*w.C.S) / w.C.S
}

// measured is the variance of the mean measured now.
func (w *WanderState) measured() float64 {
	t := w.C.S
	if t <= 0 {
		return 0
	}
	return tv("R", wanderRatio) * 6 / t * w.own() / (t * t)
}

// variance is the variance the wander adds to the sum of the scores so far.
func (w *WanderState) variance() float64 { return w.M * w.M * w.meanVariance() / 2 }

// perSecondFloor is reported in Result.Details: the wander's variance as a dispersion
// factor of the test's Poisson variance so far.
func (w *WanderState) perSecondFloor(t *TestState) float64 {
	if t.SumP <= 0 {
		return 1
	}
	return 1 + w.variance()/t.SumP
}

// integral is reported in Result.Details: the variance of the mean relative difference.
func (w *WanderState) integral() float64 { return w.meanVariance() }
