package main

import (
	"math"
	"time"

	"github.com/sluice-mesh/sluice/analyzer/judge"
)

// outcome of one decider in one run: aborted or promoted, at second t; passed: the judge
// promoted because both its metrics passed.
type outcome struct {
	aborted bool
	passed  bool
	t       float64
}

// decider sees every second's cumulative counters (as the source shows them) and ends
// with an outcome.
type decider interface {
	update(t int, hist []judge.ClusterStats, b, c judge.ClusterStats)
	result() *outcome
}

// threshold is an interval check on the canary's own window: fails when the window's
// error ratio is above maxErr or its latency quantile q above maxLat.
type threshold struct {
	every, count, abortAt int // seconds between checks, checks before promotion, failures that abort
	delay                 int // seconds before the first window starts (Argo's initialDelay)
	q                     float64
	failed, done          int
	res                   *outcome
}

func (th *threshold) result() *outcome { return th.res }

func (th *threshold) update(t int, hist []judge.ClusterStats, _, _ judge.ClusterStats) {
	if th.res != nil || t <= th.delay || (t-th.delay)%th.every != 0 {
		return
	}
	cur, prev := hist[t], hist[t-th.every]
	req, errs := cur.Requests-prev.Requests, cur.Errors-prev.Errors
	h := judge.Histogram{Bounds: cur.Latency.Bounds, Counts: make([]float64, len(cur.Latency.Counts)), Count: cur.Latency.Count - prev.Latency.Count}
	for i := range h.Counts {
		h.Counts[i] = cur.Latency.Counts[i] - prev.Latency.Counts[i]
	}
	ratio := math.NaN()
	if req > 0 {
		ratio = errs / req
	}
	ok := ratio <= 0.01 && h.Count > 0 && h.Quantile(th.q) <= 0.5 // NaN (no data) fails, as in Argo
	th.done++
	if !ok {
		th.failed++
	}
	switch {
	case th.failed >= th.abortAt:
		th.res = &outcome{aborted: true, t: float64(t)}
	case th.done >= th.count:
		th.res = &outcome{t: float64(t)}
	case th.failed+(th.count-th.done) < th.abortAt:
		// It can no longer abort: promotion at the end is certain.
		th.res = &outcome{t: float64(th.delay + th.every*th.count)}
	}
}

// templateA is the threshold AnalysisTemplate people copy: every 30 s, failureLimit 2,
// 10 measurements.
func templateA() decider { return &threshold{every: 30, count: 10, abortAt: 3, q: 0.95} }

// templateAWarmup is templateA with initialDelay: warmup, so its first window starts when
// the canary's first endpoints have warmed up.
func templateAWarmup(warmup time.Duration) decider {
	th := templateA().(*threshold)
	th.delay = int(warmup.Seconds())
	return th
}

// flaggerB is a Flagger-style check: every minute, p99, roll back at 5 failures, promote
// after 10 checks.
func flaggerB() decider { return &threshold{every: 60, count: 10, abortAt: 5, q: 0.99} }

// judges runs an errors and a latency session; abort on either Fail, promote when both
// end otherwise (Pass or Inconclusive at MaxDuration).
type judges struct {
	s   [2]*judge.Session
	d   [2]judge.Decision
	res *outcome
}

func (j *judges) result() *outcome { return j.res }

func newJudges(burnIn time.Duration) decider { return newJudgesWith(judge.Config{BurnIn: burnIn}) }

// newJudgesWith runs the judge with cfg (Signal and MaxDuration set here).
func newJudgesWith(cfg judge.Config) decider {
	t0 := time.Unix(0, 0)
	z := judge.ClusterStats{}
	j := &judges{}
	for i, sig := range []judge.Signal{judge.SignalErrors, judge.SignalLatency} {
		c := cfg
		c.Signal, c.MaxDuration = sig, 5*time.Minute
		j.s[i] = judge.NewSession(c, t0, z, z)
	}
	return j
}

// passed reports whether the judge promoted because both metrics passed (not at the end
// of its time).
func (j *judges) passed() bool { return j.d[0] == judge.Pass && j.d[1] == judge.Pass }

func (j *judges) update(t int, _ []judge.ClusterStats, b, c judge.ClusterStats) {
	if j.res != nil {
		return
	}
	now := time.Unix(int64(t), 0)
	final := true
	for i, s := range j.s {
		if !j.d[i].Final() {
			j.d[i] = s.Decide(now, b, c)
		}
		if j.d[i] == judge.Fail {
			j.res = &outcome{aborted: true, t: float64(t)}
			return
		}
		final = final && j.d[i].Final()
	}
	if final {
		j.res = &outcome{t: float64(t), passed: j.passed()}
	}
}
