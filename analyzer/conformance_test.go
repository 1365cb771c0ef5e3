package analyzer

import (
	"math"
	"testing"
	"time"

	"github.com/sluice-mesh/sluice/analyzer/provider"
	"github.com/sluice-mesh/sluice/model"
)

// The Argo conformance suite: each scenario scripts a sequence of measurements
// (success, fail, inconclusive, error, and raw provider values — NaN, an empty result,
// null — that go through the real condition evaluation), drives the pure machine tick by
// tick with an injected clock, and checks the run's phase, each metric's counters, the
// rollout's phase and its weight against what Argo Rollouts does, citing the Argo source
// (argoproj/argo-rollouts, commit 9f8d111) it follows. Scenarios where Sluice deliberately
// differs say so and name the README row ("Differences from Argo worth knowing").

// nullResult is a provider answer of JSON null (a web metric's jsonPath on a null).
type nullResult struct{}

// ans answers pending measurements by metric name: a MeasurementPhase, or a raw result
// (float64, []float64, string, nullResult) evaluated with the metric's conditions.
type ans map[string]any

// op is one step of a script: wait, then run a command, then answer.
type op struct {
	wait   time.Duration
	cmd    CommandKind
	answer ans
	// pending, when not -1 (set by the helpers), is how many measurements must be asked
	// for before answering.
	pending int
}

func wait(d time.Duration) op              { return op{wait: d, pending: -1} }
func answer(a ans) op                      { return op{answer: a, pending: -1} }
func answerN(n int, a ans) op              { return op{answer: a, pending: n} }
func command(c CommandKind) op             { return op{cmd: c, pending: -1} }
func expectPending(n int) op               { return op{pending: n} }
func waitAnswer(d time.Duration, a ans) op { return op{wait: d, answer: a, pending: -1} }

// mwant is what a metric must show at the end.
type mwant struct {
	phase                                            MeasurementPhase
	count, successful, failed, inconclusive, errored int
	measured                                         int // measurements recorded (every phase)
}

type scenario struct {
	name    string
	argo    string // the Argo source it follows: file and function
	verdict string // "" matches Argo; else the deliberate difference and its README row
	rollout *model.Rollout
	script  []op
	// the end state
	phase    Phase
	step     int
	weight   int
	run      int // index of the run checked (in State.Runs)
	runPhase MeasurementPhase
	metrics  map[string]mwant
}

func m1(name string, mod func(*model.Metric)) model.Metric {
	return metric(name, func(m *model.Metric) {
		m.SuccessCondition = "result[0] < 0.5"
		if mod != nil {
			mod(m)
		}
	})
}

func counted(n int, iv time.Duration) func(*model.Metric) {
	return func(m *model.Metric) { m.Count, m.Interval = n, iv }
}

func inlineRollout(ms ...model.Metric) *model.Rollout {
	return canary(weightStep(20), analysisStep(ms...), weightStep(60))
}

func background(start int, ms ...model.Metric) *model.Rollout {
	r := canary(weightStep(10), pauseStep(time.Minute), weightStep(30), pauseStep(time.Hour))
	r.Canary.Analysis = &model.BackgroundAnalysis{StartingStep: start,
		AnalysisRef: model.AnalysisRef{Templates: []model.TemplateRef{{Name: "bg"}}, Metrics: ms}}
	return r
}

const (
	S = MeasurementSuccessful
	F = MeasurementFailed
	I = MeasurementInconclusive
	E = MeasurementError
)

var conformance = []scenario{
	{name: "one measurement when neither count nor interval",
		argo:    "pkg/apis/rollouts/v1alpha1/analysis_types.go Metric.EffectiveCount; analysis/analysis.go assessMetricStatus",
		rollout: inlineRollout(m1("m", nil)), script: []op{answerN(1, ans{"m": S}), expectPending(0)},
		phase: PhaseHealthy, step: 3, weight: 100, runPhase: S, metrics: map[string]mwant{"m": {phase: S, count: 1, successful: 1, measured: 1}}},
	{name: "count and interval: measured every interval until count",
		argo:    "analysis/analysis.go generateMetricTasks (lastMeasurement.FinishedAt + interval), assessMetricStatus (count reached)",
		rollout: inlineRollout(m1("m", counted(3, time.Minute))),
		script: []op{answer(ans{"m": S}), wait(59 * time.Second), expectPending(0), waitAnswer(time.Second, ans{"m": S}),
			wait(time.Minute), answerN(1, ans{"m": S}), wait(time.Hour), expectPending(0)},
		phase: PhaseHealthy, step: 3, weight: 100, runPhase: S, metrics: map[string]mwant{"m": {phase: S, count: 3, successful: 3, measured: 3}}},
	{name: "initialDelay postpones the first measurement",
		argo:    "analysis/analysis.go generateMetricTasks (run.Status.StartedAt + initialDelay)",
		rollout: inlineRollout(m1("m", func(m *model.Metric) { m.InitialDelay = 30 * time.Second })),
		script:  []op{expectPending(0), wait(29 * time.Second), expectPending(0), waitAnswer(time.Second, ans{"m": S})},
		phase:   PhaseHealthy, step: 3, weight: 100, runPhase: S, metrics: map[string]mwant{"m": {phase: S, count: 1, successful: 1, measured: 1}}},
	{name: "failureLimit 0: the first failure fails the run and aborts",
		argo:    "analysis/analysis.go assessMetricFailureInconclusiveOrError; rollout/analysis.go reconcileStepBasedAnalysisRun (AddAbort)",
		rollout: inlineRollout(m1("m", counted(3, time.Minute))), script: []op{answer(ans{"m": F})},
		phase: PhaseDegraded, step: 1, weight: 0, runPhase: F, metrics: map[string]mwant{"m": {phase: F, count: 1, failed: 1, measured: 1}}},
	{name: "failureLimit 1: one failure tolerated, the second fails",
		argo:    "analysis/analysis.go assessMetricFailureInconclusiveOrError (failed > failureLimit)",
		rollout: inlineRollout(m1("m", func(m *model.Metric) { m.Count, m.Interval, m.FailureLimit = 5, 10*time.Second, 1 })),
		script:  []op{answer(ans{"m": F}), waitAnswer(10*time.Second, ans{"m": S}), waitAnswer(10*time.Second, ans{"m": F})},
		phase:   PhaseDegraded, step: 1, weight: 0, runPhase: F, metrics: map[string]mwant{"m": {phase: F, count: 3, successful: 1, failed: 2, measured: 3}}},
	{name: "failures within failureLimit pass once count is reached",
		argo:    "analysis/analysis.go assessMetricStatus (count reached, failureLimit not violated: Successful)",
		rollout: inlineRollout(m1("m", func(m *model.Metric) { m.Count, m.Interval, m.FailureLimit = 3, 10*time.Second, 2 })),
		script:  []op{answer(ans{"m": F}), waitAnswer(10*time.Second, ans{"m": F}), waitAnswer(10*time.Second, ans{"m": S})},
		phase:   PhaseHealthy, step: 3, weight: 100, runPhase: S, metrics: map[string]mwant{"m": {phase: S, count: 3, successful: 1, failed: 2, measured: 3}}},
	{name: "inconclusiveLimit 0: pause, promote goes to the next step",
		argo:    "analysis/analysis.go assessMetricFailureInconclusiveOrError; rollout/analysis.go AddPauseCondition(InconclusiveAnalysis); cmd/promote getPatches (index++)",
		rollout: canary(weightStep(20), analysisStep(m1("m", counted(3, time.Minute))), weightStep(60), model.Step{Pause: &model.Pause{}}),
		script:  []op{answer(ans{"m": I}), command(CmdPromote)},
		phase:   PhasePaused, step: 3, weight: 60, runPhase: I, metrics: map[string]mwant{"m": {phase: I, count: 1, inconclusive: 1, measured: 1}}},
	{name: "inconclusiveLimit 1: the second inconclusive pauses",
		argo:    "analysis/analysis.go assessMetricFailureInconclusiveOrError (inconclusive > inconclusiveLimit)",
		rollout: inlineRollout(m1("m", func(m *model.Metric) { m.Count, m.Interval, m.InconclusiveLimit = 4, 10*time.Second, 1 })),
		script:  []op{answer(ans{"m": I}), waitAnswer(10*time.Second, ans{"m": S}), waitAnswer(10*time.Second, ans{"m": I})},
		phase:   PhasePaused, step: 1, weight: 20, runPhase: I, metrics: map[string]mwant{"m": {phase: I, count: 3, successful: 1, inconclusive: 2, measured: 3}}},
	{name: "both conditions, neither met: Inconclusive",
		argo:    "utils/evaluate/evaluate.go EvaluateResult",
		rollout: inlineRollout(m1("m", func(m *model.Metric) { m.FailureCondition = "result[0] > 0.8" })),
		script:  []op{answer(ans{"m": []float64{0.6}})},
		phase:   PhasePaused, step: 1, weight: 20, runPhase: I, metrics: map[string]mwant{"m": {phase: I, count: 1, inconclusive: 1, measured: 1}}},
	{name: "no condition: always Successful",
		argo:    "utils/evaluate/evaluate.go EvaluateResult (neither condition set)",
		rollout: inlineRollout(metric("m", nil)), script: []op{answer(ans{"m": []float64{123}})},
		phase: PhaseHealthy, step: 3, weight: 100, runPhase: S, metrics: map[string]mwant{"m": {phase: S, count: 1, successful: 1, measured: 1}}},
	{name: "consecutiveErrorLimit 4 (default): five errors in a row, 10 s apart, abort",
		argo:    "analysis/analysis.go assessMetricFailureInconclusiveOrError (consecutiveErrors > limit), DefaultErrorRetryInterval; utils/defaults GetConsecutiveErrorLimitOrDefault",
		rollout: inlineRollout(m1("m", counted(2, time.Minute))),
		script: []op{answer(ans{"m": E}), wait(9 * time.Second), expectPending(0), waitAnswer(time.Second, ans{"m": E}),
			waitAnswer(10*time.Second, ans{"m": E}), waitAnswer(10*time.Second, ans{"m": E}), waitAnswer(10*time.Second, ans{"m": E})},
		phase: PhaseDegraded, step: 1, weight: 0, runPhase: E, metrics: map[string]mwant{"m": {phase: E, errored: 5, measured: 5}}},
	{name: "a success resets the error streak; errors never count toward count",
		argo:    "analysis/analysis.go runMeasurements (ConsecutiveError = 0 on a completed measurement; Error not in Count)",
		rollout: inlineRollout(m1("m", func(m *model.Metric) { m.Count, m.Interval, m.ConsecutiveErrorLimit = 2, time.Minute, 1 })),
		script:  []op{answer(ans{"m": E}), waitAnswer(10*time.Second, ans{"m": S}), waitAnswer(time.Minute, ans{"m": E}), waitAnswer(10*time.Second, ans{"m": S})},
		phase:   PhaseHealthy, step: 3, weight: 100, runPhase: S, metrics: map[string]mwant{"m": {phase: S, count: 2, successful: 2, errored: 2, measured: 4}}},
	{name: "NaN fails `result[0] < 0.5` (expr: NaN < 0.5 is false)",
		argo:    "utils/evaluate/evaluate.go EvaluateResult/EvalCondition (expr); metricproviders/prometheus processResponse",
		rollout: inlineRollout(m1("m", nil)), script: []op{answer(ans{"m": []float64{math.NaN()}})},
		phase: PhaseDegraded, step: 1, weight: 0, runPhase: F, metrics: map[string]mwant{"m": {phase: F, count: 1, failed: 1, measured: 1}}},
	{name: "NaN with a failureCondition only would pass: Inconclusive",
		argo:    "utils/evaluate/evaluate.go EvaluateResult (Argo: Successful)",
		verdict: "deliberate difference: README \"Differences from Argo worth knowing\" — no data is never a pass",
		rollout: inlineRollout(metric("m", func(m *model.Metric) { m.FailureCondition = "result[0] > 0.5" })),
		script:  []op{answer(ans{"m": []float64{math.NaN()}})},
		phase:   PhasePaused, step: 1, weight: 20, runPhase: I, metrics: map[string]mwant{"m": {phase: I, count: 1, inconclusive: 1, measured: 1}}},
	{name: "an empty result indexed by the condition is an Error",
		argo:    "utils/evaluate/evaluate.go formatEvalError (metric result is nil or empty)",
		rollout: inlineRollout(m1("m", func(m *model.Metric) { m.ConsecutiveErrorLimit = 0 })),
		script:  []op{answer(ans{"m": []float64{}})},
		phase:   PhaseDegraded, step: 1, weight: 0, runPhase: E, metrics: map[string]mwant{"m": {phase: E, errored: 1, measured: 1}}},
	{name: "an empty result a condition would pass (all()) is Inconclusive",
		argo:    "utils/evaluate/evaluate.go EvaluateResult (Argo: Successful)",
		verdict: "deliberate difference: README \"Differences from Argo worth knowing\" — no data is never a pass",
		rollout: inlineRollout(metric("m", func(m *model.Metric) { m.SuccessCondition = "all(result, {# < 0.5})" })),
		script:  []op{answer(ans{"m": []float64{}})},
		phase:   PhasePaused, step: 1, weight: 20, runPhase: I, metrics: map[string]mwant{"m": {phase: I, count: 1, inconclusive: 1, measured: 1}}},
	{name: "null does not equal 'OK': Failed",
		argo:    "metricproviders/webmetric/webmetric.go parseResponse; utils/evaluate EvaluateResult",
		rollout: inlineRollout(metric("m", func(m *model.Metric) { m.SuccessCondition = "result == 'OK'" })),
		script:  []op{answer(ans{"m": nullResult{}})},
		phase:   PhaseDegraded, step: 1, weight: 0, runPhase: F, metrics: map[string]mwant{"m": {phase: F, count: 1, failed: 1, measured: 1}}},
	{name: "a non-JSON web body is a string: result == 'OK'",
		argo:    "metricproviders/webmetric/webmetric.go parseResponse (json.Unmarshal fails: EvaluateResult(bodyStr))",
		rollout: inlineRollout(metric("m", func(m *model.Metric) { m.SuccessCondition = "result == 'OK'" })),
		script:  []op{answer(ans{"m": "OK"})},
		phase:   PhaseHealthy, step: 3, weight: 100, runPhase: S, metrics: map[string]mwant{"m": {phase: S, count: 1, successful: 1, measured: 1}}},
	{name: "a failing dry-run metric never decides",
		argo:    "analysis/analysis.go assessRunStatus (dryRunMetricsMap: worst status ignores dry-run); utils/analysis IsTerminating",
		rollout: inlineRollout(m1("dry", func(m *model.Metric) { m.DryRun = true }), m1("real", counted(2, 10*time.Second))),
		script:  []op{answer(ans{"dry": F, "real": S}), waitAnswer(10*time.Second, ans{"real": S})},
		phase:   PhaseHealthy, step: 3, weight: 100, runPhase: S,
		metrics: map[string]mwant{"dry": {phase: F, count: 1, failed: 1, measured: 1}, "real": {phase: S, count: 2, successful: 2, measured: 2}}},
	{name: "the run stays Running until a dry-run metric completes",
		argo:    "analysis/analysis.go assessRunStatus (everythingCompleted covers dry-run metrics)",
		rollout: inlineRollout(m1("dry", func(m *model.Metric) { m.DryRun = true; m.Count, m.Interval = 3, time.Minute }), m1("real", nil)),
		script: []op{answer(ans{"dry": S, "real": S}), expectPending(0), wait(time.Minute), answerN(1, ans{"dry": S}),
			wait(time.Minute), answerN(1, ans{"dry": F})},
		phase: PhaseHealthy, step: 3, weight: 100, runPhase: S,
		metrics: map[string]mwant{"dry": {phase: F, count: 3, successful: 2, failed: 1, measured: 3}, "real": {phase: S, count: 1, successful: 1, measured: 1}}},
	{name: "sibling measurements of the deciding tick are all recorded",
		argo:    "analysis/analysis.go runMeasurements (all tasks of a reconcile measured and recorded before assessRunStatus)",
		rollout: inlineRollout(m1("a", counted(3, time.Minute)), m1("b", counted(3, time.Minute))),
		script:  []op{answer(ans{"a": F, "b": S})},
		phase:   PhaseDegraded, step: 1, weight: 0, runPhase: F,
		metrics: map[string]mwant{"a": {phase: F, count: 1, failed: 1, measured: 1}, "b": {phase: MeasurementTerminated, count: 1, successful: 1, measured: 1}}},
	{name: "the worst phase wins: Failed over Inconclusive in one tick",
		argo:    "utils/analysis/helpers.go IsWorse (analysisStatusOrder); analysis/analysis.go assessRunStatus",
		rollout: inlineRollout(m1("a", nil), m1("b", nil)),
		script:  []op{answer(ans{"a": I, "b": F})},
		phase:   PhaseDegraded, step: 1, weight: 0, runPhase: F,
		metrics: map[string]mwant{"a": {phase: I, count: 1, inconclusive: 1, measured: 1}, "b": {phase: F, count: 1, failed: 1, measured: 1}}},
	{name: "Error is worse than Inconclusive",
		argo:    "utils/analysis/helpers.go analysisStatusOrder (Inconclusive < Error < Failed)",
		rollout: inlineRollout(m1("a", nil), m1("b", func(m *model.Metric) { m.ConsecutiveErrorLimit = 0 })),
		script:  []op{answer(ans{"a": I, "b": E})},
		phase:   PhaseDegraded, step: 1, weight: 0, runPhase: E,
		metrics: map[string]mwant{"a": {phase: I, count: 1, inconclusive: 1, measured: 1}, "b": {phase: E, errored: 1, measured: 1}}},
	{name: "a metric still measuring when another fails is terminated",
		argo:    "utils/analysis/helpers.go IsTerminating; analysis/analysis.go assessMetricStatus(terminating) (Argo shows it Successful)",
		verdict: "deliberate difference: README \"Differences from Argo worth knowing\" — a metric stopped before completing shows Terminated, not Successful",
		rollout: inlineRollout(m1("a", counted(3, time.Minute)), m1("b", func(m *model.Metric) { m.Count, m.Interval, m.InitialDelay = 1, time.Minute, 30*time.Second })),
		script:  []op{answerN(1, ans{"a": S}), waitAnswer(30*time.Second, ans{"b": F}), wait(time.Hour), expectPending(0)},
		phase:   PhaseDegraded, step: 1, weight: 0, runPhase: F,
		metrics: map[string]mwant{"a": {phase: MeasurementTerminated, count: 1, successful: 1, measured: 1}, "b": {phase: F, count: 1, failed: 1, measured: 1}}},
	{name: "consecutiveSuccessLimit reached before count: Successful early",
		argo: "analysis/analysis.go assessMetricStatus (ConsecutiveSuccessLimit reached, v1.8)",
		rollout: inlineRollout(m1("m", func(m *model.Metric) {
			m.Count, m.Interval, m.FailureLimit, m.ConsecutiveSuccessLimit = 6, 10*time.Second, 2, 2
		})),
		script: []op{answer(ans{"m": F}), waitAnswer(10*time.Second, ans{"m": S}), waitAnswer(10*time.Second, ans{"m": S}), wait(time.Hour), expectPending(0)},
		phase:  PhaseHealthy, step: 3, weight: 100, runPhase: S, metrics: map[string]mwant{"m": {phase: S, count: 3, successful: 2, failed: 1, measured: 3}}},
	{name: "count reached, consecutiveSuccessLimit not reached, failureLimit -1: Failed",
		argo: "analysis/analysis.go assessMetricStatus (successApplicable only: Failed)",
		rollout: inlineRollout(m1("m", func(m *model.Metric) {
			m.Count, m.Interval, m.FailureLimit, m.ConsecutiveSuccessLimit = 4, 10*time.Second, -1, 3
		})),
		script: []op{answer(ans{"m": S}), waitAnswer(10*time.Second, ans{"m": F}), waitAnswer(10*time.Second, ans{"m": S}),
			waitAnswer(10*time.Second, ans{"m": S})},
		phase: PhaseDegraded, step: 1, weight: 0, runPhase: F, metrics: map[string]mwant{"m": {phase: F, count: 4, successful: 3, failed: 1, measured: 4}}},
	{name: "count reached, consecutiveSuccessLimit not reached, failureLimit not violated: Inconclusive",
		argo: "analysis/analysis.go assessMetricStatus (failureApplicable && successApplicable: Inconclusive)",
		rollout: inlineRollout(m1("m", func(m *model.Metric) {
			m.Count, m.Interval, m.FailureLimit, m.ConsecutiveSuccessLimit = 4, 10*time.Second, 1, 3
		})),
		script: []op{answer(ans{"m": S}), waitAnswer(10*time.Second, ans{"m": F}), waitAnswer(10*time.Second, ans{"m": S}),
			waitAnswer(10*time.Second, ans{"m": S})},
		phase: PhasePaused, step: 1, weight: 20, runPhase: I, metrics: map[string]mwant{"m": {phase: I, count: 4, successful: 3, failed: 1, measured: 4}}},
	{name: "background analysis starts at startingStep and aborts during a pause",
		argo:    "rollout/analysis.go reconcileBackgroundAnalysisRun (BeforeStartingStep; AddAbort)",
		rollout: background(2, m1("bg", func(m *model.Metric) { m.Interval = 30 * time.Second })),
		script:  []op{expectPending(0), wait(time.Minute), answerN(1, ans{"bg": S}), waitAnswer(30*time.Second, ans{"bg": F})},
		phase:   PhaseDegraded, step: 3, weight: 0, runPhase: F, metrics: map[string]mwant{"bg": {phase: F, count: 2, successful: 1, failed: 1, measured: 2}}},
	{name: "an indefinite background metric runs until the rollout completes",
		argo:    "rollout/analysis.go reconcileAnalysisRuns (cancel when fully promoted); analysis/analysis.go assessRunStatus (terminating: Successful)",
		rollout: canary(weightStep(10), pauseStep(time.Minute)),
		// The measurement asked for in the tick that completed the rollout still comes
		// back and is recorded; the metric then shows Terminated.
		script: []op{answer(ans{"bg": S}), waitAnswer(30*time.Second, ans{"bg": S}), wait(30 * time.Second), answerN(1, ans{"bg": S})},
		phase:  PhaseHealthy, step: 2, weight: 100, runPhase: S, metrics: map[string]mwant{"bg": {phase: MeasurementTerminated, count: 3, successful: 3, measured: 3}}},
	{name: "background inconclusive pauses; promote starts a new run",
		argo:    "rollout/analysis.go needsNewAnalysisRun (inconclusive run after a pause: new run)",
		rollout: background(0, m1("bg", func(m *model.Metric) { m.Interval = 20 * time.Second })),
		script:  []op{answer(ans{"bg": I}), command(CmdPromote), expectPending(1), answer(ans{"bg": S})},
		phase:   PhasePaused, step: 3, weight: 30, run: 1, runPhase: MeasurementRunning,
		metrics: map[string]mwant{"bg": {phase: MeasurementRunning, count: 1, successful: 1, measured: 1}}},
	{name: "blue/green: pre-promotion analysis gates the switch",
		argo: "rollout/analysis.go reconcilePrePromotionAnalysisRun; rollout/bluegreen.go",
		rollout: blueGreen(func(bg *model.BlueGreenStrategy) {
			bg.PrePromotionAnalysis = &model.AnalysisRef{Metrics: []model.Metric{m1("pre", counted(2, 10*time.Second))}}
		}),
		script: []op{answer(ans{"pre": S}), waitAnswer(10*time.Second, ans{"pre": S}), wait(30 * time.Second)},
		phase:  PhaseHealthy, step: 1, weight: 100, runPhase: S, metrics: map[string]mwant{"pre": {phase: S, count: 2, successful: 2, measured: 2}}},
	{name: "blue/green: a failed pre-promotion analysis aborts; no switch",
		argo: "rollout/analysis.go setPauseOrAbortForBlueGreen (pre-promotion error/failed: AddAbort)",
		rollout: blueGreen(func(bg *model.BlueGreenStrategy) {
			bg.PrePromotionAnalysis = &model.AnalysisRef{Metrics: []model.Metric{m1("pre", nil)}}
		}),
		script: []op{answer(ans{"pre": F})},
		phase:  PhaseDegraded, step: 0, weight: 0, runPhase: F, metrics: map[string]mwant{"pre": {phase: F, count: 1, failed: 1, measured: 1}}},
	{name: "blue/green: a failed post-promotion analysis switches back",
		argo: "rollout/analysis.go reconcilePostPromotionAnalysisRun, setPauseOrAbortForBlueGreen (post-promotion: AddAbort)",
		rollout: blueGreen(func(bg *model.BlueGreenStrategy) {
			bg.PostPromotionAnalysis = &model.AnalysisRef{Metrics: []model.Metric{m1("post", nil)}}
		}),
		script: []op{answer(ans{"post": F})},
		phase:  PhaseDegraded, step: 1, weight: 0, runPhase: F, metrics: map[string]mwant{"post": {phase: F, count: 1, failed: 1, measured: 1}}},
	{name: "blue/green: an inconclusive post-promotion analysis pauses; promote completes",
		argo: "rollout/analysis.go setPauseOrAbortForBlueGreen (Inconclusive: AddPauseCondition)",
		rollout: blueGreen(func(bg *model.BlueGreenStrategy) {
			bg.PostPromotionAnalysis = &model.AnalysisRef{Metrics: []model.Metric{m1("post", nil)}}
		}),
		script: []op{answer(ans{"post": I}), command(CmdPromote), wait(30 * time.Second)},
		phase:  PhaseHealthy, step: 1, weight: 100, runPhase: I, metrics: map[string]mwant{"post": {phase: I, count: 1, inconclusive: 1, measured: 1}}},
	{name: "promote --full skips the analysis; the run is terminated",
		argo:    "rollout/analysis.go reconcileAnalysisRuns (PromoteFull: cancelAnalysisRuns); analysis/analysis.go assessRunStatus (terminate: Successful)",
		rollout: inlineRollout(m1("m", counted(3, time.Minute))),
		script:  []op{answer(ans{"m": S}), command(CmdPromoteFull)},
		phase:   PhaseHealthy, step: 3, weight: 100, runPhase: S, metrics: map[string]mwant{"m": {phase: MeasurementTerminated, count: 1, successful: 1, measured: 1}}},
	{name: "an operator abort terminates the run",
		argo:    "rollout/analysis.go reconcileAnalysisRuns (isAborted: cancelAnalysisRuns)",
		rollout: inlineRollout(m1("m", counted(3, time.Minute))),
		script:  []op{answer(ans{"m": S}), command(CmdAbort), wait(time.Hour), expectPending(0)},
		phase:   PhaseDegraded, step: 1, weight: 0, runPhase: S, metrics: map[string]mwant{"m": {phase: MeasurementTerminated, count: 1, successful: 1, measured: 1}}},
	{name: "LowTraffic is shown, not counted, and retried",
		argo:    "(no Argo equivalent: Sluice's minRequests gate)",
		verdict: "Sluice extension: README \"Analysis\" — low traffic waits",
		rollout: inlineRollout(m1("m", counted(1, 10*time.Second))),
		script:  []op{answer(ans{"m": MeasurementLowTraffic}), waitAnswer(10*time.Second, ans{"m": MeasurementLowTraffic}), waitAnswer(10*time.Second, ans{"m": S})},
		phase:   PhaseHealthy, step: 3, weight: 100, runPhase: S, metrics: map[string]mwant{"m": {phase: S, count: 1, successful: 1, measured: 3}}},
	{name: "the first release runs its steps and analyses",
		argo:    "rollout/analysis.go reconcileAnalysisRuns (initialDeploy: Argo skips analysis, the first ReplicaSet is fully promoted)",
		verdict: "deliberate difference: README \"Differences from Argo worth knowing\" — there are no pods, so the first release is a release too",
		rollout: inlineRollout(m1("m", nil)), script: []op{answer(ans{"m": F})},
		phase: PhaseDegraded, step: 1, weight: 0, runPhase: F, metrics: map[string]mwant{"m": {phase: F, count: 1, failed: 1, measured: 1}}},
}

func init() {
	// The indefinite background scenario's rollout needs its background analysis.
	for i := range conformance {
		if conformance[i].name == "an indefinite background metric runs until the rollout completes" {
			r := conformance[i].rollout
			r.Canary.Analysis = &model.BackgroundAnalysis{AnalysisRef: model.AnalysisRef{Templates: []model.TemplateRef{{Name: "bg"}},
				Metrics: []model.Metric{m1("bg", func(m *model.Metric) { m.Interval = 30 * time.Second })}}}
		}
	}
}

// measureFor turns a scripted answer into the measurement a provider would return.
func measureFor(spec model.Metric, a any) Measurement {
	switch v := a.(type) {
	case MeasurementPhase:
		return Measurement{Phase: v, Message: "scripted"}
	case nullResult:
		return evaluate(spec, nil, true)
	default:
		return evaluate(spec, v, provider.IsNoData(v))
	}
}

func TestArgoConformance(t *testing.T) {
	if len(conformance) < 29 {
		t.Fatalf("%d scenarios; the suite covers at least 29", len(conformance))
	}
	for _, sc := range conformance {
		t.Run(sc.name, func(t *testing.T) {
			if sc.argo == "" {
				t.Fatal("scenario cites no Argo source")
			}
			d := newDriver(t, sc.rollout)
			for i, o := range sc.script {
				if o.wait > 0 {
					d.advance(o.wait)
				}
				if o.cmd != "" {
					d.tick(Inputs{Commands: []CommandKind{o.cmd}})
				}
				if o.pending >= 0 && len(d.pending) != o.pending {
					t.Fatalf("op %d: %d measurements asked for, want %d (state %s: %s)", i, len(d.pending), o.pending, d.st.Phase, d.st.Message)
				}
				if o.answer == nil {
					continue
				}
				var res []Result
				var keep []*MeasureAction
				for _, a := range d.pending {
					v, ok := o.answer[a.Metric.Name]
					if !ok {
						keep = append(keep, a)
						continue
					}
					ms := measureFor(a.Metric, v)
					ms.StartedAt, ms.FinishedAt = d.now, d.now
					res = append(res, Result{Run: a.Run, Metric: a.Metric.Name, Measurement: ms})
				}
				if len(res) != len(o.answer) {
					t.Fatalf("op %d: answered %d measurements, the script has %d (pending: %d)", i, len(res), len(o.answer), len(d.pending))
				}
				d.pending = keep
				d.tick(Inputs{Results: res})
			}
			d.expect(sc.phase, sc.step, sc.weight)
			if d.st.ActualWeight != sc.weight {
				t.Fatalf("actual weight %d, want %d", d.st.ActualWeight, sc.weight)
			}
			if sc.run >= len(d.st.Runs) {
				t.Fatalf("no run %d: %+v", sc.run, d.st.Runs)
			}
			r := d.st.Runs[sc.run]
			if r.Phase != sc.runPhase {
				t.Errorf("run phase %s (%s), want %s", r.Phase, r.Message, sc.runPhase)
			}
			for name, w := range sc.metrics {
				mr := r.metric(name)
				if mr == nil {
					t.Fatalf("no metric %s", name)
				}
				got := mwant{phase: mr.Phase, count: mr.Count, successful: mr.Successful, failed: mr.Failed,
					inconclusive: mr.Inconclusive, errored: mr.Error, measured: len(mr.Measurements)}
				if got != w {
					t.Errorf("metric %s: %+v (%s), want %+v", name, got, mr.Message, w)
				}
			}
			t.Logf("Argo: %s; verdict: %s", sc.argo, verdictOf(sc))
		})
	}
}

func verdictOf(sc scenario) string {
	if sc.verdict == "" {
		return "matches Argo"
	}
	return sc.verdict
}
