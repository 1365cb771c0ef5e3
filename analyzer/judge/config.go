// Package judge is Sluice's statistical canary judge: an anytime-valid sequential test
// that compares a canary cluster with its baseline (usually the stable cluster) on error
// rate or on a latency quantile, and decides Fail as soon as the canary is shown worse
// than the tolerance, Pass as soon as it is shown not worse, and Inconclusive when its
// time is up. It may be checked as often as one likes and stopped whenever.
//
// # What it compares
//
// Updates (cumulative counters, usually one a second) are grouped into blocks: a block
// closes once it is at least a second long and both clusters' counters have moved, so
// counters a Prometheus scrapes every 15 s at its own phase per cluster make 15 s blocks
// rather than blocks in which one side is empty. Each block gives a score
//
//	z = h·(canary rate − baseline rate − τ),   h = n_c·n_b / (n_c + n_b),
//
// with n_c, n_b the block's requests. Errors: rates are error rates and τ = (tolerance − 1)
// × the baseline's own error rate, so errors both clusters see at once (a dependency
// failing) cancel in the difference instead of diluting the canary's own excess, and a
// 2× canary stays 2× its stable's own rate during an outage. The baseline's own rate
// leaves out blocks with a burst. Latency: rates are exceedance rates — the canary's
// requests slower than tol·t + abs against the baseline's slower than t, t near the
// baseline's quantile, so a canary within tolerance (stochastically) has the smaller
// one. One side of each pair is counted exactly at a bucket bound; the other lies inside
// a bucket and is interpolated from the histogram's shape (Histogram.split: within a few
// percent for log-normal-like tails, so the effective tolerance is the configured one;
// rounding to the next bound made it about 1.5× near a 100–150 ms p95). Thresholds are
// chosen from earlier blocks only.
//
// # How it decides
//
// For "worse" (Fail) the judge tests "the mean score is at most 0", for "not worse" (Pass)
// the mirror image, each with a mixture of betting supermartingales (seq.go): for a bet
// λ a block multiplies the wealth by exp(λ·z − φ·ψ(λ)), ψ the cumulant of the score's
// Poisson counts at the null boundary and φ ≥ 1 a dispersion factor. Under the null this
// has expectation at most 1, so by Ville's inequality the chance that the mixture ever
// reaches 1/α — a wrong Fail, or a wrong Pass — is at most α. The error-rate floor
// (AbsoluteTolerance) is a second test that must also reject before a Fail (an
// intersection-union test, still level α).
//
// Real traffic is not Poisson. What keeps the test honest on it:
//   - Dispersion φ is measured online from the blocks' own variability, at batches of 1,
//     5, 15 and 60 s (so noise correlated over tens of seconds is seen too), from earlier
//     blocks only, and it only ever inflates the Poisson variance.
//   - A burst cannot decide: in the Fail test each cluster's events in a block count up
//     to 5× the baseline's usual rate (an outage, or its edge seen a few seconds apart by
//     the two clusters, a stalled pod), the same rate for both; a block may add at most
//     1.5 nats of evidence, and a block with a burst or beyond three standard deviations
//     at most 0.75 — so a decision needs several blocks that agree, and an outage edge
//     several seconds long cannot reach log(1/α) ≈ 4.6 alone.
//   - In the Pass test only the baseline's burst is cut back and the canary's counts
//     whole: an outage can delay a Pass, never cause one.
//
// # The assumption that remains
//
// The guarantee holds if, given the past, each block's score (after the cuts above) has
// mean at most 0 when the canary is within tolerance and varies at most φ times as much
// as Poisson counts would, φ being what earlier blocks showed. Noise within a block, or
// from one block to the next, is covered. What is not is the canary's rate drifting away
// from the stable's for longer than the judge has watched: each cluster's error rate or
// latency tail wandering on its own (a factor e^±σ for tens of seconds, independently of
// the other), or a single canary pod whose rare stalls have not happened yet. For that
// long a healthy canary is, in the data, worse than its stable, and nothing tells it from
// a regression that began with the canary: on clean streams a 2× canary at 1000 rps is
// failed in about 13 s, while with σ 0.5 over ~30 s a healthy canary is 2× its stable
// for that long about one time in six (bench/README.md measures both, and the threshold
// any test would need to tell them apart). Later the drift's size can be estimated from
// the session, but only as a statistic of one or two degrees of freedom; measured that
// way it cost clean-stream power and mistook drifts both clusters share for the
// canary's own without bringing false aborts near α (bench/README.md). So by default
// the judge assumes each cluster's rate relative to the other's is steady, and where it
// is not, it aborts healthy canaries (9–30% at 1000 rps with σ 0.5). A drift both
// clusters share cancels in the scores and is no concern. Config.Wander states the drift
// the judge must tolerate: it then holds α for drifts up to that size with correlation
// times up to a minute (a two-minute drift measured at about 2α), at the price of slower
// decisions. Latency interpolation, the plug-in baseline rates, the dispersion
// estimate and the Fail test's lower clip (seq.go) are approximations; the rest of the
// argument is exact.
//
// Cold starts: the guarantee is about the canary's rate over the traffic the judge sees.
// Sluice's router keeps requests served by endpoints younger than the cluster's warm-up
// out of its series, so in-process the judge needs no burn-in (BurnIn 0, the default).
// Envoy stats include them, so ConfigFrom gives a Prometheus source a 30 s BurnIn: traffic
// in the first BurnIn after the session starts is discarded, which delays every decision
// by that long (measured in bench/README.md).
//
// Use: build a Config with ConfigFrom, take a Source (GathererSource for Sluice's own
// router, PrometheusSource for Envoy stats in Prometheus), and either drive a Session with
// cumulative ClusterStats yourself or let a Tracker read the Source on every call. A
// session's whole state is SessionState (Session.State, Tracker.State): store it to
// continue after a restart with Restore.
package judge

import (
	"fmt"
	"time"

	"github.com/sluice-mesh/sluice/model"
)

// Signal names what the judge compares.
type Signal string

// Signals.
const (
	// SignalErrors compares error rates (errors / requests).
	SignalErrors Signal = "errors"
	// SignalLatency compares a latency quantile, read from histograms.
	SignalLatency Signal = "latency"
)

// Defaults applied by ConfigFrom and Config.withDefaults.
const (
	DefaultAlpha             = 0.01
	DefaultRelativeTolerance = 1.2
	DefaultErrorsAbsTol      = 0.001 // error-rate floor: 0.1 percentage points
	DefaultLatencyAbsTol     = 0.010 // seconds added to the tolerated latency
	DefaultQuantile          = 0.95
	DefaultMinSamples        = 100
	DefaultMaxDuration       = 10 * time.Minute
	// DefaultBurnIn is 0: Sluice's router already keeps warm-up traffic (Cluster
	// spec.warmup) out of the series the judge reads. DefaultPrometheusBurnIn applies
	// when the judge reads Envoy stats from Prometheus, which do not exclude it.
	DefaultBurnIn           = 0
	DefaultPrometheusBurnIn = 30 * time.Second
)

// Config is one judge's configuration. Zero fields take the documented defaults.
type Config struct {
	// Signal is SignalErrors (default) or SignalLatency.
	Signal Signal
	// Alpha bounds the chance of a wrong decision: of failing a canary within tolerance,
	// and of passing one outside it. Default 0.01.
	Alpha float64
	// RelativeTolerance: the canary may be this many times the baseline. Default 1.2.
	RelativeTolerance float64
	// AbsoluteTolerance. Errors: an error-rate floor; a canary is failed only when its
	// error rate is shown above both RelativeTolerance × baseline's and this floor, so
	// 0.01% against 0.02% never fails (default 0.001). Latency: seconds added to
	// RelativeTolerance × baseline's quantile (default 0.010). Negative means 0.
	AbsoluteTolerance float64
	// Quantile of latency compared, in (0, 1). Default 0.95.
	Quantile float64
	// MinSamples: requests each cluster must have served (after the burn-in) before the
	// judge decides anything; below it the result is NotEnoughData. Default 100.
	MinSamples float64
	// MaxDuration: with no decision by then the result is Inconclusive. Default 10 min.
	MaxDuration time.Duration
	// BurnIn: traffic in the first BurnIn after the session starts is ignored (cold
	// starts: JIT, caches, connection pools). Default 0 because Sluice's router already
	// excludes warm-up traffic; ConfigFrom uses 30 s for a Prometheus (Envoy) source.
	BurnIn time.Duration
	// Wander is how far each cluster's error rate or latency tail drifts on its own
	// while both are healthy: the log standard deviation of that drift (0.5: by a factor
	// e^±0.5, for up to about a minute at a time). For latency it is the drift of the
	// share of requests beyond the tolerated threshold, about four times the drift of the
	// latency itself near a p95 (latency drifting by e^±0.1 wants about 0.4). The judge
	// cannot tell such a drift from a regression in the first tens of seconds (see the
	// package doc), so it assumes none unless told; told, it holds Alpha for drifts up to
	// Wander and takes longer to decide (bench/README.md). A drift both clusters share
	// needs no Wander. Default 0.
	Wander float64
}

// ConfigFrom converts the model's judge provider, applying defaults.
func ConfigFrom(p *model.JudgeProvider) Config {
	if p == nil {
		return Config{}.withDefaults()
	}
	c := Config{
		Signal:            Signal(p.Signal),
		Alpha:             p.Alpha,
		RelativeTolerance: p.RelativeTolerance,
		AbsoluteTolerance: p.AbsoluteTolerance,
		Quantile:          p.Quantile,
		MinSamples:        float64(p.MinSamples),
		MaxDuration:       p.MaxDuration,
		Wander:            p.Wander,
	}
	if p.PrometheusAddress != "" {
		c.BurnIn = DefaultPrometheusBurnIn
	}
	if p.BurnIn != nil {
		c.BurnIn = *p.BurnIn
	}
	return c.withDefaults()
}

// withDefaults fills zero fields with the defaults.
func (c Config) withDefaults() Config {
	if c.Signal == "" {
		c.Signal = SignalErrors
	}
	if c.Alpha <= 0 || c.Alpha >= 1 {
		c.Alpha = DefaultAlpha
	}
	if c.RelativeTolerance <= 0 {
		c.RelativeTolerance = DefaultRelativeTolerance
	}
	if c.AbsoluteTolerance == 0 {
		if c.Signal == SignalLatency {
			c.AbsoluteTolerance = DefaultLatencyAbsTol
		} else {
			c.AbsoluteTolerance = DefaultErrorsAbsTol
		}
	}
	if c.AbsoluteTolerance < 0 {
		c.AbsoluteTolerance = 0
	}
	if c.Quantile <= 0 || c.Quantile >= 1 {
		c.Quantile = DefaultQuantile
	}
	if c.MinSamples <= 0 {
		c.MinSamples = DefaultMinSamples
	}
	if c.MaxDuration <= 0 {
		c.MaxDuration = DefaultMaxDuration
	}
	if c.BurnIn < 0 {
		c.BurnIn = 0
	}
	if c.Wander < 0 {
		c.Wander = 0
	}
	return c
}

// Validate reports a configuration the judge cannot run.
func (c Config) Validate() error {
	if c.Signal != SignalErrors && c.Signal != SignalLatency {
		return fmt.Errorf("judge: signal %q: want %q or %q", c.Signal, SignalErrors, SignalLatency)
	}
	return nil
}
