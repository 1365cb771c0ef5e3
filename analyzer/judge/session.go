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
	// bound of the error-rate ratio (an upper bound once passed). Latency: a lower bound
	// (upper once passed) of P(canary > tol·t_b + abs) / P(baseline > t_b), with t_b the
	// baseline's quantile; above 1 means worse than tolerated. 0 means no bound yet.
	Bound float64
	// Message says why, in one line.
	Message string
	// Details carries the figures behind the decision (always finite numbers).
	Details map[string]float64
}

// Session is one sequential test of one canary against its baseline. Feed it cumulative
// counters with Update as often as you like; it is not safe for concurrent use.
type Session struct {
	cfg      Config
	start    time.Time
	prevB    ClusterStats
	prevC    ClusterStats
	totB     ClusterStats // sums of the intervals fed to the tests
	totC     ClusterStats
	started  bool // burn-in over
	final    *Result
	resets   int
	failR    *seqRatio // errors: ratio ≤ tol (fail side), latency: exceedance ratio ≤ 1
	passR    *seqRatio
	floorF   *seqRate // errors only
	floorP   *seqRate
	lastNote string
}

// NewSession starts a test at start with each cluster's cumulative counters at that
// moment; only traffic after them (and after cfg.BurnIn) counts.
func NewSession(cfg Config, start time.Time, baseline0, canary0 ClusterStats) *Session {
	cfg = cfg.withDefaults()
	s := &Session{cfg: cfg, start: start, prevB: baseline0, prevC: canary0}
	if cfg.Signal == SignalLatency {
		s.failR = newSeqRatio(1, failKappas)
		s.passR = newSeqRatio(1, passKappas)
	} else {
		s.failR = newSeqRatio(cfg.RelativeTolerance, failKappas)
		s.passR = newSeqRatio(cfg.RelativeTolerance, passKappas)
		if cfg.AbsoluteTolerance > 0 {
			s.floorF = newSeqRate(cfg.AbsoluteTolerance, floorFailKappas)
			s.floorP = newSeqRate(cfg.AbsoluteTolerance, floorPassKappas)
		}
	}
	s.started = cfg.BurnIn <= 0
	return s
}

// Config returns the session's configuration with defaults applied.
func (s *Session) Config() Config { return s.cfg }

// Update feeds each cluster's cumulative counters at now and returns the verdict.
func (s *Session) Update(now time.Time, baseline, canary ClusterStats) Result {
	if s.final != nil {
		return *s.final
	}
	d, why := s.step(now, baseline, canary)
	elapsed := now.Sub(s.start)
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
		s.final = &r
	}
	return r
}

// Decide is Update without building the Result (no bounds, details or message): for
// simulations that only need the decision. Mixing Decide and Update is fine.
func (s *Session) Decide(now time.Time, baseline, canary ClusterStats) Decision {
	if s.final != nil {
		return s.final.Decision
	}
	d, _ := s.step(now, baseline, canary)
	if d.Final() {
		r := s.result(d, now.Sub(s.start), s.describe(d))
		s.final = &r
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
	elapsed := now.Sub(s.start)
	dB, okB := baseline.sub(s.prevB)
	dC, okC := canary.sub(s.prevC)
	s.prevB, s.prevC = baseline, canary
	if !s.started {
		if elapsed < s.cfg.BurnIn {
			return Continue, whyBurnIn
		}
		s.started = true
		// The interval that straddles the end of the burn-in is dropped too.
		dB, dC = ClusterStats{}, ClusterStats{}
	}
	if !okB || !okC {
		s.resets++ // a counter went backwards (restart): skip this interval
	} else {
		s.feed(dB, dC)
	}
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
		return s.totB.Latency.Count, s.totC.Latency.Count
	}
	return s.totB.Requests, s.totC.Requests
}

// feed adds one interval's increments to the tests and the totals.
func (s *Session) feed(dB, dC ClusterStats) {
	if s.cfg.Signal == SignalLatency {
		s.feedLatency(dB, dC)
	} else {
		eC := math.Min(dC.Errors, dC.Requests)
		eB := math.Min(dB.Errors, dB.Requests)
		s.failR.add(dC.Requests, dB.Requests, eC, eC+eB)
		s.passR.add(dC.Requests, dB.Requests, eC, eC+eB)
		if s.floorF != nil {
			s.floorF.add(dC.Requests, eC)
			s.floorP.add(dC.Requests, eC)
		}
	}
	s.totB = addStats(s.totB, dB)
	s.totC = addStats(s.totC, dC)
}

// feedLatency counts, for this interval, baseline requests slower than a bucket bound
// t_b near the baseline's quantile and canary requests slower than tol·t_b + abs, rounded
// up to a bucket bound for the fail side and down for the pass side so both stay
// conservative. t_b is chosen from earlier intervals only (so the choice is predictable,
// which keeps the test valid): among the bounds the baseline exceeds between a third of
// and three times 1-Quantile of the time (the pass side down to a twentieth), the one
// whose tolerated bound needs the least rounding (the pass side: whose canary bound lies
// furthest above t_b), then the one nearest the quantile. If the canary is no worse than
// tol × baseline + abs (stochastic order), its exceedance probability at tol·t_b + abs is
// at most the baseline's at t_b, i.e. the exceedance-rate ratio is ≤ 1.
func (s *Session) feedLatency(dB, dC ClusterStats) {
	hB := s.totB.Latency
	if hB.Count <= 0 || len(hB.Bounds) == 0 || len(dC.Latency.Bounds) != len(hB.Bounds) || len(dB.Latency.Bounds) != len(hB.Bounds) {
		return
	}
	nB, nC := dB.Latency.Count, dC.Latency.Count
	if ib, iu, ok := s.pickBounds(hB, true); ok {
		xB, xC := dB.Latency.countAbove(ib), dC.Latency.countAbove(iu)
		s.failR.add(nC, nB, xC, xC+xB)
	}
	if ib, id, ok := s.pickBounds(hB, false); ok {
		xB, xC := dB.Latency.countAbove(ib), dC.Latency.countAbove(id)
		s.passR.add(nC, nB, xC, xC+xB)
	}
}

// pickBounds returns the baseline bound index ib and the canary bound index (rounded up
// for the fail side, down for the pass side) to compare in the next interval.
func (s *Session) pickBounds(hB Histogram, failSide bool) (ib, ic int, ok bool) {
	tail := 1 - s.cfg.Quantile
	best, bestSlack, bestDist := -1, math.Inf(1), math.Inf(1)
	bestC := -1
	consider := func(i int, band bool) {
		f := hB.countAbove(i) / hB.Count
		lo := tail / 3
		if !failSide {
			lo = tail / 20 // coarse buckets: the pass side may have to look further out
		}
		if band && (f < lo || f > 3*tail) {
			return
		}
		target := s.cfg.RelativeTolerance*hB.Bounds[i] + s.cfg.AbsoluteTolerance
		var c int
		var slack float64
		if failSide {
			c = hB.boundAtLeast(target)
			if c >= len(hB.Bounds) {
				return
			}
			slack = hB.Bounds[c] / target
		} else {
			c = hB.boundAtMost(target)
			if c <= i {
				return // the canary bound must lie above the baseline's to show anything
			}
			slack = hB.Bounds[i] / hB.Bounds[c] // smaller: a wider margin to show
		}
		dist := math.Abs(math.Log(math.Max(f, 1e-9) / tail))
		if slack < bestSlack-1e-9 || (slack < bestSlack+1e-9 && dist < bestDist) {
			best, bestC, bestSlack, bestDist = i, c, slack, dist
		}
	}
	for i := range hB.Bounds {
		consider(i, true)
	}
	if best < 0 {
		if i := hB.quantileBucket(s.cfg.Quantile); i < len(hB.Bounds) {
			consider(i, false)
		}
	}
	if best < 0 {
		s.lastNote = "baseline quantile beyond the histogram's buckets"
		return 0, 0, false
	}
	return best, bestC, true
}

// failEvidence is the log e-value for "canary worse than tolerated": for errors the
// smaller of the ratio test and the floor test (both must reject — an intersection-union
// test, level α without splitting α).
func (s *Session) failEvidence() float64 {
	e := s.failR.evidence()
	if s.floorF != nil {
		e = math.Min(e, s.floorF.evidence())
	}
	return e
}

// passes: the ratio test rejects "worse" — for errors, either the ratio test or the floor
// test does, each at α/2.
func (s *Session) passes() bool {
	if s.floorP == nil {
		return s.passR.evidence() >= math.Log(1/s.cfg.Alpha)
	}
	thr := math.Log(2 / s.cfg.Alpha)
	return s.passR.evidence() >= thr || s.floorP.evidence() >= thr
}

// result assembles a Result with the current estimate, bound and details.
func (s *Session) result(d Decision, elapsed time.Duration, msg string) Result {
	a := s.cfg.Alpha
	lower, upper := s.failR.lowerBound(a), s.passR.upperBound(a)
	det := map[string]float64{
		"elapsedSeconds":  elapsed.Seconds(),
		"alpha":           a,
		"tolerance":       s.cfg.RelativeTolerance,
		"absTolerance":    s.cfg.AbsoluteTolerance,
		"logEvidenceFail": finite(s.failEvidence()),
		"logEvidencePass": finite(s.passR.evidence()),
		"logThreshold":    math.Log(1 / a),
		"lowerBound":      lower,
		"upperBound":      upper,
	}
	nB, nC := s.samples()
	det["baselineSamples"], det["canarySamples"] = nB, nC
	var est float64
	if s.cfg.Signal == SignalLatency {
		qB, qC := s.totB.Latency.Quantile(s.cfg.Quantile), s.totC.Latency.Quantile(s.cfg.Quantile)
		det["baselineQuantile"], det["canaryQuantile"] = qB, qC
		det["toleratedQuantile"] = s.cfg.RelativeTolerance*qB + s.cfg.AbsoluteTolerance
		det["quantile"] = s.cfg.Quantile
		if qB > 0 {
			est = qC / qB
		}
	} else {
		det["baselineErrors"], det["canaryErrors"] = s.totB.Errors, s.totC.Errors
		if nB > 0 && nC > 0 {
			det["baselineErrorRate"] = s.totB.Errors / nB
			det["canaryErrorRate"] = s.totC.Errors / nC
			est = ((s.totC.Errors + 0.5) / nC) / ((s.totB.Errors + 0.5) / nB)
		}
		if s.floorF != nil {
			det["logEvidenceFloor"] = finite(s.floorF.evidence())
		}
	}
	if s.resets > 0 {
		det["counterResets"] = float64(s.resets)
	}
	bound := lower
	if d == Pass {
		bound = upper
	}
	return Result{Decision: d, Estimate: finite(est), Bound: bound, Message: msg, Details: det}
}

// describe writes the one-line message for a decision.
func (s *Session) describe(d Decision) string {
	a := s.cfg.Alpha
	var what string
	if s.cfg.Signal == SignalLatency {
		qB, qC := s.totB.Latency.Quantile(s.cfg.Quantile), s.totC.Latency.Quantile(s.cfg.Quantile)
		what = fmt.Sprintf("p%g latency canary %.1f ms vs baseline %.1f ms (tolerated %.1f ms)",
			s.cfg.Quantile*100, qC*1000, qB*1000, (s.cfg.RelativeTolerance*qB+s.cfg.AbsoluteTolerance)*1000)
	} else {
		nB, nC := s.samples()
		what = fmt.Sprintf("error rate canary %.3f%% (%.0f/%.0f) vs baseline %.3f%% (%.0f/%.0f), tolerated %.2f× or below %.3f%%",
			100*s.totC.Errors/nC, s.totC.Errors, nC, 100*s.totB.Errors/nB, s.totB.Errors, nB,
			s.cfg.RelativeTolerance, 100*s.cfg.AbsoluteTolerance)
	}
	switch d {
	case Fail:
		return fmt.Sprintf("canary worse than tolerated (α=%g): %s", a, what)
	case Pass:
		return fmt.Sprintf("canary shown within tolerance (α=%g): %s", a, what)
	case Inconclusive:
		return fmt.Sprintf("no decision within %v: %s", s.cfg.MaxDuration, what)
	}
	msg := "watching: " + what
	if s.lastNote != "" {
		msg += "; " + s.lastNote
	}
	return msg
}

func addStats(a, b ClusterStats) ClusterStats {
	out := ClusterStats{Requests: a.Requests + b.Requests, Errors: a.Errors + b.Errors}
	switch {
	case len(a.Latency.Bounds) == 0:
		out.Latency = Histogram{Bounds: b.Latency.Bounds, Counts: append([]float64(nil), b.Latency.Counts...), Count: b.Latency.Count}
	case len(b.Latency.Counts) == len(a.Latency.Counts):
		h := Histogram{Bounds: a.Latency.Bounds, Counts: a.Latency.Counts, Count: a.Latency.Count + b.Latency.Count}
		for i := range h.Counts {
			h.Counts[i] += b.Latency.Counts[i]
		}
		out.Latency = h
	default:
		out.Latency = a.Latency
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
