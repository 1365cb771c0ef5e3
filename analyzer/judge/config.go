// Package judge is Sluice's statistical canary judge: an anytime-valid sequential test
// that compares a canary cluster with its baseline (usually the stable cluster) on error
// rate or on a latency quantile, and decides Fail as soon as the canary is shown worse
// than the tolerance, Pass as soon as it is shown not worse, and Inconclusive when its
// time is up. Its error guarantees hold however often it is checked (see seq.go).
//
// Method (seq.go): both signals become a pair of counts per update interval — errors, or
// requests slower than a bucket bound near the baseline's quantile (canary: slower than
// tolerance × that bound + absolute tolerance) — compared with a mixture sequential
// probability ratio test on the canary's share of those events, conditioned on their total
// and on each side's request count (Lindon, Sanden, Shirikian, KDD 2022). One side of the
// test looks for "worse than tolerated" (Fail), the other for "not worse" (Pass); each is
// a non-negative supermartingale under its null, so by Ville's inequality the chance of a
// wrong Fail, or of a wrong Pass, is at most Alpha however often the judge is updated and
// whenever it stops. The error-rate floor (AbsoluteTolerance) is a second one-sample test
// that must also reject before a Fail (an intersection-union test, still level Alpha).
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
// cumulative ClusterStats yourself or let a Tracker read the Source on every call.
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
	return c
}

// Validate reports a configuration the judge cannot run.
func (c Config) Validate() error {
	if c.Signal != SignalErrors && c.Signal != SignalLatency {
		return fmt.Errorf("judge: signal %q: want %q or %q", c.Signal, SignalErrors, SignalLatency)
	}
	return nil
}
