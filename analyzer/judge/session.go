package judge

import (
	"fmt"
	"math"
	"time"
)

// Decision is the judge's verdict after an update.
type Decision string

// Decisions. Pass, Fail and Inconclusive are final: a Session returns the same Result
// from then on.
const (
	// Continue: no decision yet; keep watching.
	Continue Decision = "Continue"
	// Pass: the canary is shown not worse than the tolerance.
	Pass Decision = "Pass"
	// Fail: the canary is shown worse than the tolerance.
	Fail Decision = "Fail"
	// Inconclusive: MaxDuration passed without a decision.
	Inconclusive Decision = "Inconclusive"
	// NotEnoughData: a cluster has fewer than MinSamples requests; the judge does not
	// decide on that (the evidence still accumulates).
	NotEnoughData Decision = "NotEnoughData"
)

// Final reports whether d ends the session.
func (d Decision) Final() bool { return d == Pass || d == Fail || d == Inconclusive }

// Result is the judge's answer after one update.
type Result struct {
	Decision Decision
	// Estimate: errors — the canary's error rate over the baseline's; latency — the
	// canary's quantile over the baseline's (both over the same window since the burn-in).
	Estimate float64
	// Bound: the anytime-valid confidence bound the decision rests on. Errors: a lower
	// bound of the ratio of the canary's error rate to the baseline's own (an upper bound
	// once passed). Latency: a lower bound (upper once passed) of
	// P(canary > tol·t_b + abs) / P(baseline > t_b), with t_b near the baseline's
	// quantile; above 1 means worse than tolerated. 0 means no bound yet.
	Bound float64
	// Message says why, in one line.
	Message string
	// Details carries the figures behind the decision (always finite numbers).
	Details map[string]float64
}

// minBlock is the shortest block: updates are grouped into blocks of at least this long
// in which both clusters' counters moved (see blocks in config.go).
const minBlock = time.Second

// Session is one sequential test of one canary against its baseline. Feed it cumulative
// counters with Update as often as you like; it is not safe for concurrent use. Its whole
// state is State(); Restore continues it.
type Session struct {
	cfg Config
	st  SessionState
}

// NewSession starts a test at start with each cluster's cumulative counters at that
// moment; only traffic after them (and after cfg.BurnIn) counts.
func NewSession(cfg Config, start time.Time, baseline0, canary0 ClusterStats) *Session {
	cfg = cfg.withDefaults()
	s := &Session{cfg: cfg, st: SessionState{
		Version: stateVersion, Signal: cfg.Signal, Start: start,
		PrevBaseline: baseline0.clone(), PrevCanary: canary0.clone(),
		Started: cfg.BurnIn <= 0, BlockStart: start,
		Fail: newTestState(), Pass: newTestState(),
	}}
	if cfg.Signal == SignalErrors && cfg.AbsoluteTolerance > 0 {
		s.st.FloorFail, s.st.FloorPass = newTestState(), newTestState()
	}
	return s
}

// Config returns the session's configuration with defaults applied.
func (s *Session) Config() Config { return s.cfg }

// Update feeds each cluster's cumulative counters at now and returns the verdict.
func (s *Session) Update(now time.Time, baseline, canary ClusterStats) Result {
	if s.st.Final != nil {
		return *s.st.Final
	}
	d, why := s.step(now, baseline, canary)
	elapsed := now.Sub(s.st.Start)
	var msg string
	switch why {
	case whyBurnIn:
		msg = fmt.Sprintf("burn-in: ignoring traffic for the first %v (cold starts)", s.cfg.BurnIn)
	case whyNoData:
		nB, nC := s.samples()
		msg = fmt.Sprintf("not enough data: baseline %.0f, canary %.0f requests of %.0f needed each", nB, nC, s.cfg.MinSamples)
		if d == Inconclusive {
			msg += " by the end of " + s.cfg.MaxDuration.String()
		}
	default:
		msg = s.describe(d)
	}
	r := s.result(d, elapsed, msg)
	if d.Final() {
		s.st.Final = &r
	}
	return r
}

// Decide is Update without building the Result (no bounds, details or message): for
// simulations that only need the decision. Mixing Decide and Update is fine.
func (s *Session) Decide(now time.Time, baseline, canary ClusterStats) Decision {
	if s.st.Final != nil {
		return s.st.Final.Decision
	}
	d, _ := s.step(now, baseline, canary)
	if d.Final() {
		r := s.result(d, now.Sub(s.st.Start), s.describe(d))
		s.st.Final = &r
	}
	return d
}

type why int

const (
	whyTest why = iota
	whyBurnIn
	whyNoData
)

// step feeds one update to the tests and decides.
func (s *Session) step(now time.Time, baseline, canary ClusterStats) (Decision, why) {
	st := &s.st
	elapsed := now.Sub(st.Start)
	dB, okB := baseline.sub(st.PrevBaseline)
	dC, okC := canary.sub(st.PrevCanary)
	st.PrevBaseline, st.PrevCanary = baseline.clone(), canary.clone()
	if !st.Started {
		if elapsed < s.cfg.BurnIn {
			return Continue, whyBurnIn
		}
		// The interval that straddles the end of the burn-in is dropped too.
		st.Started = true
		st.BlockStart = now
		return s.decide(elapsed)
	}
	if !okB || !okC {
		// A counter went backwards (a restart): drop this interval and the open block.
		st.Resets++
		st.BlockBaseline, st.BlockCanary = ClusterStats{}, ClusterStats{}
		st.BlockStart = now
		return s.decide(elapsed)
	}
	st.BlockBaseline = addStats(st.BlockBaseline, dB)
	st.BlockCanary = addStats(st.BlockCanary, dC)
	if now.Sub(st.BlockStart) >= minBlock && moved(st.BlockBaseline, s.cfg.Signal) && moved(st.BlockCanary, s.cfg.Signal) {
		s.feed(st.BlockBaseline, st.BlockCanary, now.Sub(st.BlockStart).Seconds())
		st.BlockBaseline, st.BlockCanary = ClusterStats{}, ClusterStats{}
		st.BlockStart = now
	}
	return s.decide(elapsed)
}

// moved reports whether a block holds any traffic of the signal.
func moved(d ClusterStats, sig Signal) bool {
	if sig == SignalLatency {
		return d.Latency.Count > 0
	}
	return d.Requests > 0
}

// decide maps the current evidence to a decision.
func (s *Session) decide(elapsed time.Duration) (Decision, why) {
	nB, nC := s.samples()
	if nB < s.cfg.MinSamples || nC < s.cfg.MinSamples {
		if elapsed >= s.cfg.MaxDuration {
			return Inconclusive, whyNoData
		}
		return NotEnoughData, whyNoData
	}
	if s.failEvidence() >= math.Log(1/s.cfg.Alpha) {
		return Fail, whyTest
	}
	if s.passes() {
		return Pass, whyTest
	}
	if elapsed >= s.cfg.MaxDuration {
		return Inconclusive, whyTest
	}
	return Continue, whyTest
}

// samples returns the requests (latency: observations) each cluster has had counted.
func (s *Session) samples() (baseline, canary float64) {
	if s.cfg.Signal == SignalLatency {
		return s.st.Baseline.Latency.Count, s.st.Canary.Latency.Count
	}
	return s.st.Baseline.Requests, s.st.Canary.Requests
}

// feed adds one closed block to the tests and the totals.
func (s *Session) feed(dB, dC ClusterStats, secs float64) {
	if s.cfg.Signal == SignalLatency {
		s.feedLatency(dB, dC, secs)
	} else {
		s.feedErrors(dB, dC, secs)
	}
	s.st.Blocks++
	s.st.Baseline = addStats(s.st.Baseline, dB)
	s.st.Canary = addStats(s.st.Canary, dC)
}

// split returns, for canary and baseline counts nc and nb, the jump of one canary event
// (a), of one baseline event (b) and the weight of a rate difference (h) in the block
// score a·x − b·y = h·(x/nc − y/nb).
func split(nc, nb float64) (a, b, h float64) {
	return nb / (nc + nb), nc / (nc + nb), nc * nb / (nc + nb)
}

// rate is a pooled rate with half an event of prior (never 0, so a variance is never 0).
func rate(events, n float64) float64 { return (events + 0.5) / (n + 1) }

// feedErrors scores one block on error rates. The score is h·(canary rate − baseline
// rate − τ), with τ = (tolerance − 1) × the baseline's own error rate: the canary's
// excess is compared with the baseline's in the same block, so errors both clusters see
// at once (a dependency failing) cancel instead of diluting the canary's own excess.
func (s *Session) feedErrors(dB, dC ClusterStats, secs float64) {
	st := &s.st
	nc, nb := dC.Requests, dB.Requests
	if nc <= 0 || nb <= 0 {
		return
	}
	x, y := math.Min(dC.Errors, nc), math.Min(dB.Errors, nb)
	if st.Blocks > 0 { // the first block only gives the rates a start
		// Poisson variances at the null boundary (canary rate = baseline rate + τ): the
		// cumulant the test subtracts is the largest any null distribution has. The
		// nuisance (baseline) rate is the rate so far, or this block's when it is clearly
		// higher — up to the burst level, beyond which counts are cut back below.
		burst := math.Max(s.usual(nc)/nc, s.usual(nb)/nb)
		pB := math.Max(rate(st.Baseline.Errors, st.Baseline.Requests), math.Min((y-2*math.Sqrt(y))/nb, burst))
		pC := math.Max(rate(st.Canary.Errors, st.Canary.Requests), pB)
		tau := (s.cfg.RelativeTolerance - 1) * s.ownRate()
		a, b, h := split(nc, nb)
		vx, vy := nc*(pB+tau), nb*pB
		obs := a*a*nc*pC + b*b*nb*pB
		w := s.wander(h*math.Sqrt(((pB+tau)*(pB+tau)+pB*pB)/2), a*a*vx+b*b*vy, secs)
		// "Worse": a burst (an error rate beyond 5× the baseline's usual one, or a
		// Poisson excursion above it, for the smaller cluster: an outage, or its edge
		// seen by one cluster first) counts only up to that rate, the same on either
		// side, and the block adds little (see extremeGainCap). Cutting both at one rate
		// favours the cluster with more traffic (whose rate varies less), never the canary
		// over a baseline that behaves alike.
		xf, yf := math.Min(x, burst*nc), math.Min(y, burst*nb)
		st.Fail.add(score{z: a*xf - b*yf - h*tau, h: h, up: a, down: b, vUp: vx, vDown: vy, obs: obs, secs: secs, minPhi: w,
			extreme: xf < x || yf < y})
		// For "not worse" only the baseline's burst is cut back (less is conservative):
		// a canary's burst counts whole against it.
		st.Pass.add(score{z: b*yf - a*x + h*tau, h: h, up: b, down: a, vUp: vy, vDown: vx, obs: obs, secs: secs, noLowerClip: true, minPhi: w})
		if st.FloorFail != nil {
			f := s.cfg.AbsoluteTolerance
			v := nc * f
			st.FloorFail.add(score{z: x - nc*f, h: nc, up: 1, vUp: v, obs: nc * pC, secs: secs})
			st.FloorPass.add(score{z: nc*f - x, h: nc, down: 1, vDown: v, obs: nc * pC, secs: secs, noLowerClip: true})
		}
	}
	// The baseline's own error rate leaves blocks with a burst (a shared outage) out.
	if y <= s.usual(nb) {
		st.OwnErrors += y
		st.OwnRequests += nb
	}
}

// Config.Wander's model: each cluster's rate carries its own drifting factor e^u, u a
// stationary process of standard deviation Wander whose correlation time is at most
// wanderTime (an Ornstein-Uhlenbeck process).
const wanderTime = 60.0

// wander is the dispersion floor Config.Wander implies for a block of secs seconds whose
// score has Poisson variance p and moves by m per unit of relative drift of each
// cluster's rate (m² the mean of the two clusters' squared sensitivities). A log-normal
// drift's upward excursions are longer-tailed than a Gaussian of the same variance, so
// the judge takes its excursion at two standard deviations, e^{2W} − 1, as two standard
// deviations of a Gaussian: each cluster's relative rate varies by d² = ((e^{2W} − 1)/2)²,
// their difference by c = 2d². Over the first t seconds the sum of the scores then gains
// variance at the rate ms²·2c·τ(1 − e^{−t/τ}) per second (ms = m/secs, τ = wanderTime), and
// the block takes its share.
func (s *Session) wander(m, p, secs float64) float64 {
	W := s.cfg.Wander
	if W <= 0 || p <= 0 || secs <= 0 {
		return 0
	}
	t := s.st.Fail.SumSecs + secs
	d := math.Expm1(2*W) / 2
	c := 2 * d * d
	return 1 + 2*c*wanderTime*(-math.Expm1(-t/wanderTime))*m*m/(p*secs)
}

// ownRate is the baseline's own error rate, from the blocks without a burst (feedErrors).
func (s *Session) ownRate() float64 { return rate(s.st.OwnErrors, s.st.OwnRequests) }

// usual is the most errors out of n requests the baseline has at its own rate.
func (s *Session) usual(n float64) float64 { return usualCount(s.ownRate() * n) }

// usualCount is the most events a count expected at mean has outside a burst: 5× the
// mean, or a Poisson excursion above it.
func usualCount(mean float64) float64 { return math.Max(5*mean, mean+4*math.Sqrt(mean)+2) }

// feedLatency scores one block on latency exceedances: with t_b near the baseline's
// quantile, the canary's requests slower than tol·t_b + abs against the baseline's slower
// than t_b. If the canary is no slower than tol × baseline + abs, its exceedance
// probability at tol·t_b + abs is at most the baseline's at t_b; the score is h times the
// difference of the two exceedance rates. Thresholds are chosen from earlier blocks only;
// the count at a threshold inside a bucket is interpolated (see Histogram.above).
func (s *Session) feedLatency(dB, dC ClusterStats, secs float64) {
	st := &s.st
	hB, hC := st.Baseline.Latency, st.Canary.Latency
	nb, nc := dB.Latency.Count, dC.Latency.Count
	if nb <= 0 || nc <= 0 || hB.Count < latencyMinPooled || hC.Count <= 0 ||
		!sameBounds(hB, dB.Latency) || !sameBounds(hB, dC.Latency) || !sameBounds(hB, hC) {
		if hB.Count >= latencyMinPooled {
			st.Note = "latency histograms with different buckets: not compared"
		}
		return
	}
	a, b, h := split(nc, nb)
	tol, abs := s.cfg.RelativeTolerance, s.cfg.AbsoluteTolerance
	// Fail side: the canary counted exactly above a bucket bound u, the baseline above
	// t = (u − abs)/tol, interpolated (over-counted where unsure).
	if u, ok := s.pickFail(hB); ok {
		t := (hB.Bounds[u] - abs) / tol
		j, f, shaped := hB.splitShape(t)
		st.Note = ""
		if !shaped && j > 0 && j < len(hB.Bounds) && hB.Bounds[j]/hB.Bounds[j-1] > tol {
			// The resolution limit: too few observations beyond this bucket to see its
			// shape, and the bucket wider than the tolerance.
			st.Note = fmt.Sprintf("latency buckets %g–%g ms around the baseline's p%g are coarser than the tolerance: failing needs a canary slower than configured",
				1000*hB.Bounds[j-1], 1000*hB.Bounds[j], 100*s.cfg.Quantile)
		}
		x := dC.Latency.countAbove(u)
		y, _ := dB.Latency.countAt(j, f)
		qB, qBv := hB.countAt(j, f)
		qB, qBv = (qB+0.5)/(hB.Count+1), (qBv+0.5)/(hB.Count+1)
		qC := rate(hC.countAbove(u), hC.Count)
		vx, vy := nc*qB, nb*qBv // at the null boundary: the canary's exceedance = the baseline's
		obs := a*a*nc*qC + b*b*vy
		// Bursts (a stalled pod, a shared stall seen by one cluster first) count up to
		// 5× the usual exceedances on either side, as for errors.
		burst := math.Max(usualCount(nc*qB)/nc, usualCount(nb*qB)/nb)
		xf, yf := math.Min(x, burst*nc), math.Min(y, burst*nb)
		st.Fail.add(score{z: a*xf - b*yf, h: h, up: a, down: b, vUp: vx, vDown: vy, obs: obs, secs: secs,
			extreme: xf < x || yf < y, minPhi: s.wander(h*qB, a*a*vx+b*b*vy, secs)})
		st.LatencyBaselineTail = qB
	}
	// Pass side: the baseline counted exactly above a bound t, the canary above
	// tol·t + abs, interpolated (over-counted where unsure).
	if tb, ok := s.pickPass(hB); ok {
		j, f := hC.split(tol*hB.Bounds[tb] + abs)
		y := dB.Latency.countAbove(tb)
		x, _ := dC.Latency.countAt(j, f)
		qB := rate(hB.countAbove(tb), hB.Count)
		_, qCv := hC.countAt(j, f)
		vx, vy := nc*qB, nb*qB // at the null boundary; an interpolated count varies less
		obs := a*a*nc*(qCv+0.5)/(hC.Count+1) + b*b*vy
		// A burst of the baseline's (a stall it sees first) is no evidence for the canary.
		y = math.Min(y, usualCount(vy))
		st.Pass.add(score{z: b*y - a*x, h: h, up: b, down: a, vUp: vy, vDown: vx, obs: obs, secs: secs, noLowerClip: true,
			minPhi: s.wander(h*qB, b*b*vy+a*a*vx, secs)})
	}
}

// latencyMinPooled is how many baseline observations the judge needs before it picks
// latency thresholds.
const latencyMinPooled = 20

// pickFail returns the canary bound index u for the fail side: the bound whose tolerated
// baseline threshold (u − abs)/tol the baseline exceeds closest to 1 − Quantile of the
// time (between a twentieth and half of the time).
func (s *Session) pickFail(hB Histogram) (int, bool) {
	tol, abs := s.cfg.RelativeTolerance, s.cfg.AbsoluteTolerance
	best, bestDist := -1, math.Inf(1)
	for i, u := range hB.Bounds {
		t := (u - abs) / tol
		if t <= 0 || t > hB.Bounds[len(hB.Bounds)-1] {
			continue
		}
		q, _ := hB.countAt(hB.split(t))
		best, bestDist = s.closer(i, q/hB.Count, best, bestDist)
	}
	if best < 0 {
		s.st.Note = "baseline quantile beyond the histogram's buckets"
	}
	return best, best >= 0
}

// pickPass returns the baseline bound index t for the pass side, chosen like pickFail.
func (s *Session) pickPass(hB Histogram) (int, bool) {
	tol, abs := s.cfg.RelativeTolerance, s.cfg.AbsoluteTolerance
	best, bestDist := -1, math.Inf(1)
	for i, t := range hB.Bounds {
		if tol*t+abs > hB.Bounds[len(hB.Bounds)-1] {
			continue
		}
		best, bestDist = s.closer(i, hB.countAbove(i)/hB.Count, best, bestDist)
	}
	return best, best >= 0
}

// closer keeps candidate i when its exceedance fraction f is nearer the quantile's tail.
func (s *Session) closer(i int, f float64, best int, bestDist float64) (int, float64) {
	tail := 1 - s.cfg.Quantile
	if f < tail/20 || f > 0.5 {
		return best, bestDist
	}
	if d := math.Abs(math.Log(f / tail)); d < bestDist {
		return i, d
	}
	return best, bestDist
}

// failEvidence is the log e-value for "canary worse than tolerated": for errors the
// smaller of the ratio test and the floor test (both must reject — an intersection-union
// test, level α without splitting α).
func (s *Session) failEvidence() float64 {
	e := s.st.Fail.evidence()
	if s.st.FloorFail != nil {
		e = math.Min(e, s.st.FloorFail.evidence())
	}
	return e
}

// passes: the ratio test rejects "worse" — for errors, either the ratio test or the floor
// test does, each at α/2.
func (s *Session) passes() bool {
	if s.st.FloorPass == nil {
		return s.st.Pass.evidence() >= math.Log(1/s.cfg.Alpha)
	}
	thr := math.Log(2 / s.cfg.Alpha)
	return s.st.Pass.evidence() >= thr || s.st.FloorPass.evidence() >= thr
}

// bounds returns the anytime-valid confidence bounds of the ratio the decision is about
// (see Result.Bound): lower from the fail side, upper from the pass side; 0 when none.
func (s *Session) bounds() (lower, upper float64) {
	thr := math.Log(1 / s.cfg.Alpha)
	const maxRatio = 1000
	var scale, at float64 // excess per unit of ratio, and the ratio at the null boundary
	if s.cfg.Signal == SignalLatency {
		scale, at = s.st.LatencyBaselineTail, 1
	} else {
		scale, at = s.ownRate(), s.cfg.RelativeTolerance
	}
	if scale <= 0 {
		return 0, 0
	}
	// Fail side: the largest ratio r at which "ratio ≤ r" is still rejected; pass side:
	// the smallest at which "ratio ≥ r" is.
	failAt := func(r float64) bool { return s.st.Fail.evidenceShifted((r-at)*scale) >= thr }
	passAt := func(r float64) bool { return s.st.Pass.evidenceShifted((at-r)*scale) >= thr }
	if failAt(0) {
		lower = bisect(0, maxRatio, failAt)
	}
	if passAt(maxRatio) {
		upper = bisect(0, maxRatio, func(r float64) bool { return !passAt(r) })
	}
	return lower, upper
}

// bisect returns the boundary in [lo, hi] where ok, true at lo, turns false (hi when it
// never does).
func bisect(lo, hi float64, ok func(float64) bool) float64 {
	if ok(hi) {
		return hi
	}
	for i := 0; i < 60; i++ {
		if mid := (lo + hi) / 2; ok(mid) {
			lo = mid
		} else {
			hi = mid
		}
	}
	return lo
}

// result assembles a Result with the current estimate, bound and details.
func (s *Session) result(d Decision, elapsed time.Duration, msg string) Result {
	st := &s.st
	a := s.cfg.Alpha
	lower, upper := s.bounds()
	det := map[string]float64{
		"elapsedSeconds":  elapsed.Seconds(),
		"alpha":           a,
		"tolerance":       s.cfg.RelativeTolerance,
		"absTolerance":    s.cfg.AbsoluteTolerance,
		"logEvidenceFail": finite(s.failEvidence()),
		"logEvidencePass": finite(st.Pass.evidence()),
		"logThreshold":    math.Log(1 / a),
		"lowerBound":      finite(lower),
		"upperBound":      finite(upper),
		"dispersion":      finite(st.Fail.dispersion()),
		"blocks":          float64(st.Blocks),
	}
	if s.cfg.Wander > 0 {
		det["wander"] = s.cfg.Wander
	}
	nB, nC := s.samples()
	det["baselineSamples"], det["canarySamples"] = nB, nC
	var est float64
	if s.cfg.Signal == SignalLatency {
		qB, qC := st.Baseline.Latency.Quantile(s.cfg.Quantile), st.Canary.Latency.Quantile(s.cfg.Quantile)
		det["baselineQuantile"], det["canaryQuantile"] = qB, qC
		det["toleratedQuantile"] = s.cfg.RelativeTolerance*qB + s.cfg.AbsoluteTolerance
		det["quantile"] = s.cfg.Quantile
		if qB > 0 {
			est = qC / qB
		}
	} else {
		det["baselineErrors"], det["canaryErrors"] = st.Baseline.Errors, st.Canary.Errors
		if nB > 0 && nC > 0 {
			det["baselineErrorRate"] = st.Baseline.Errors / nB
			det["canaryErrorRate"] = st.Canary.Errors / nC
			det["baselineOwnErrorRate"] = finite(s.ownRate())
			est = ((st.Canary.Errors + 0.5) / nC) / ((st.Baseline.Errors + 0.5) / nB)
		}
		if st.FloorFail != nil {
			det["logEvidenceFloor"] = finite(st.FloorFail.evidence())
		}
	}
	if st.Resets > 0 {
		det["counterResets"] = float64(st.Resets)
	}
	bound := lower
	if d == Pass {
		bound = upper
	}
	return Result{Decision: d, Estimate: finite(est), Bound: finite(bound), Message: msg, Details: det}
}

// describe writes the one-line message for a decision.
func (s *Session) describe(d Decision) string {
	st := &s.st
	a := s.cfg.Alpha
	var what string
	if s.cfg.Signal == SignalLatency {
		qB, qC := st.Baseline.Latency.Quantile(s.cfg.Quantile), st.Canary.Latency.Quantile(s.cfg.Quantile)
		what = fmt.Sprintf("p%g latency canary %.1f ms vs baseline %.1f ms (tolerated %.1f ms)",
			s.cfg.Quantile*100, qC*1000, qB*1000, (s.cfg.RelativeTolerance*qB+s.cfg.AbsoluteTolerance)*1000)
	} else {
		nB, nC := s.samples()
		what = fmt.Sprintf("error rate canary %.3f%% (%.0f/%.0f) vs baseline %.3f%% (%.0f/%.0f), tolerated %.2f× or below %.3f%%",
			100*st.Canary.Errors/nC, st.Canary.Errors, nC, 100*st.Baseline.Errors/nB, st.Baseline.Errors, nB,
			s.cfg.RelativeTolerance, 100*s.cfg.AbsoluteTolerance)
	}
	var msg string
	switch d {
	case Fail:
		msg = fmt.Sprintf("canary worse than tolerated (α=%g): %s", a, what)
	case Pass:
		msg = fmt.Sprintf("canary shown within tolerance (α=%g): %s", a, what)
	case Inconclusive:
		msg = fmt.Sprintf("no decision within %v: %s", s.cfg.MaxDuration, what)
	default:
		msg = "watching: " + what
		if phi := st.Fail.dispersion(); phi >= 1.5 {
			msg += fmt.Sprintf("; traffic %.1f× noisier than Poisson (the judge waits for more evidence)", phi)
		}
	}
	if st.Note != "" {
		msg += "; " + st.Note
	}
	return msg
}

func addStats(a, b ClusterStats) ClusterStats {
	out := ClusterStats{Requests: a.Requests + b.Requests, Errors: a.Errors + b.Errors}
	switch {
	case len(a.Latency.Bounds) == 0:
		out.Latency = b.Latency.clone()
	case len(b.Latency.Counts) == len(a.Latency.Counts):
		h := a.Latency.clone()
		h.Count += b.Latency.Count
		for i := range h.Counts {
			h.Counts[i] += b.Latency.Counts[i]
		}
		out.Latency = h
	default:
		out.Latency = a.Latency.clone()
	}
	return out
}

// finite maps ±Inf and NaN to 0 so Details always encode as JSON.
func finite(v float64) float64 {
	if math.IsInf(v, 0) || math.IsNaN(v) {
		return 0
	}
	return v
}
