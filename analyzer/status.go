package analyzer

import (
	"encoding/json"
	"time"
)

// Phase is a rollout's phase, as the admin API and `sluice status` show it.
type Phase string

// Rollout phases (Argo's names).
const (
	PhaseProgressing Phase = "Progressing"
	PhasePaused      Phase = "Paused"
	PhaseHealthy     Phase = "Healthy"
	PhaseDegraded    Phase = "Degraded"
)

// MeasurementPhase is the outcome of one measurement, or of a metric or analysis run.
type MeasurementPhase string

// Measurement phases (Argo's names). A measurement is never a bare bool.
const (
	MeasurementPending      MeasurementPhase = "Pending"
	MeasurementRunning      MeasurementPhase = "Running"
	MeasurementSuccessful   MeasurementPhase = "Successful"
	MeasurementFailed       MeasurementPhase = "Failed"
	MeasurementInconclusive MeasurementPhase = "Inconclusive"
	MeasurementError        MeasurementPhase = "Error"
	// MeasurementLowTraffic: a compared cluster served fewer requests than the metric's
	// minimum in the window; the measurement does not count and the metric waits.
	MeasurementLowTraffic MeasurementPhase = "LowTraffic"
	// MeasurementTerminated: the metric had not completed when its run ended (another
	// metric decided the run, or the rollout moved on); it decides nothing. Argo shows
	// such a metric as Successful; Sluice does not call a metric it never finished a pass.
	MeasurementTerminated MeasurementPhase = "Terminated"
)

// RolloutStatus is the JSON shape of GET /api/v1/rollouts/{name}.
type RolloutStatus struct {
	Name     string `json:"name"`
	Strategy string `json:"strategy"`
	Revision string `json:"revision"`
	Phase    Phase  `json:"phase"`
	Step     int    `json:"step"`  // index of the current step; == Steps when all are done
	Steps    int    `json:"steps"` // number of steps
	// StepList describes every step, in order; the one at index Step is current.
	StepList      []StepStatus `json:"stepList"`
	SetWeight     int          `json:"setWeight"`
	ActualWeight  int          `json:"actualWeight"` // what the data planes have applied (xDS: ACKed)
	Message       string       `json:"message"`
	Aborted       bool         `json:"aborted"`
	StableService string       `json:"stableService"`
	CanaryService string       `json:"canaryService"`
	// PauseEndsAt is set while a timed pause runs.
	PauseEndsAt *time.Time `json:"pauseEndsAt,omitempty"`
	// AbortLatencySeconds: from the failing measurement (or the operator's command) to
	// the zero weight applied.
	AbortLatencySeconds *float64 `json:"abortLatencySeconds,omitempty"`
	// AbortCause is what aborted: analysis (a failing measurement), operator (the
	// latency then counts from the command) or dataPlane.
	AbortCause   string              `json:"abortCause,omitempty"`
	AnalysisRuns []AnalysisRunStatus `json:"analysisRuns"`
	// PersistError is set while the rollout's state cannot be saved: a decision that
	// takes traffic away from the canary still takes effect, nothing else does, and
	// saving is retried.
	PersistError string `json:"persistError,omitempty"`
	// Waiting says what the current step waits for ("" when nothing: the release ended,
	// or the step is being taken); WaitDeadline, when set, is when that wait ends on its
	// own — a timed pause, an auto promotion, blue/green's abort window — or, for a step
	// waiting for healthy canary endpoints, when the rollout aborts.
	Waiting      string     `json:"waiting,omitempty"`
	WaitDeadline *time.Time `json:"waitDeadline,omitempty"`
	// Clusters are the release's stable and canary clusters with their healthy and
	// total endpoints in each data plane that carries them.
	Clusters []ClusterStatus `json:"clusters"`
	// Actions are the operator commands valid now (CheckCommand): promote, promoteFull,
	// abort, retry, start.
	Actions []CommandKind `json:"actions"`
	// Events are the rollout's latest events (kept in memory: since this process started).
	Events []Event `json:"events"`
	// ReloadError is the last configuration reload that was refused (the running
	// configuration stayed), until one succeeds.
	ReloadError *ReloadError `json:"reloadError,omitempty"`
	// History is the current release's weight over time, for the web view's chart.
	History []WeightPoint `json:"history"`
	// Releases are the earlier releases, oldest first, with their outcome, reason,
	// weight history and analysis runs.
	Releases  []ReleaseStatus `json:"releases"`
	StartedAt time.Time       `json:"startedAt"` // when the current release started
	UpdatedAt time.Time       `json:"updatedAt"`
}

// ClusterStatus is one of a rollout's clusters with its health in each data plane.
type ClusterStatus struct {
	Name   string        `json:"name"`
	Role   string        `json:"role"` // stable or canary (blue/green: active or preview)
	Planes ClusterHealth `json:"planes"`
}

// ReleaseStatus is an earlier release of a rollout (Release) as status shows it.
type ReleaseStatus struct {
	Revision      string              `json:"revision"`
	StableService string              `json:"stableService"`
	CanaryService string              `json:"canaryService"`
	Outcome       string              `json:"outcome"` // promoted, aborted, superseded
	Reason        string              `json:"reason"`
	AbortCause    string              `json:"abortCause,omitempty"`
	Step          int                 `json:"step"`
	Weight        int                 `json:"weight"`
	StartedAt     time.Time           `json:"startedAt"`
	EndedAt       time.Time           `json:"endedAt"`
	History       []WeightPoint       `json:"history"`
	AnalysisRuns  []AnalysisRunStatus `json:"analysisRuns"`
}

// StepStatus is one step of a rollout as status shows it.
type StepStatus struct {
	Index int `json:"index"`
	// Kind is setWeight, pause, analysis, setHeaderRoute, setMirrorRoute, ignored
	// (a Kubernetes-only step kept in place), or for blue/green: preview, switch.
	Kind string `json:"kind"`
	// Text is a short human description, e.g. "setWeight 20", "pause 1m0s".
	Text string `json:"text"`
	// State is done, current, pending, or aborted (the step the release was aborted at).
	State string `json:"state"`
}

// WeightPoint is the canary weight from a moment on.
type WeightPoint struct {
	Time         time.Time `json:"time"`
	SetWeight    int       `json:"setWeight"`
	ActualWeight int       `json:"actualWeight"`
}

// AnalysisRunStatus is one analysis run: an inline step, the background analysis, or a
// blue/green pre- or post-promotion analysis.
type AnalysisRunStatus struct {
	Name    string           `json:"name"`
	Kind    string           `json:"kind"` // inline, background, prePromotion, postPromotion
	Step    int              `json:"step"` // step index that started it (inline, background)
	Phase   MeasurementPhase `json:"phase"`
	Message string           `json:"message"`
	Metrics []MetricStatus   `json:"metrics"`
}

// MetricStatus is one metric of an analysis run with its recent measurements.
type MetricStatus struct {
	Name             string           `json:"name"`
	Provider         string           `json:"provider"` // prometheus, prometheus(embedded), web, judge
	Query            string           `json:"query,omitempty"`
	SuccessCondition string           `json:"successCondition,omitempty"`
	FailureCondition string           `json:"failureCondition,omitempty"`
	DryRun           bool             `json:"dryRun"`
	Phase            MeasurementPhase `json:"phase"`
	Count            int              `json:"count"`
	Successful       int              `json:"successful"`
	Failed           int              `json:"failed"`
	Inconclusive     int              `json:"inconclusive"`
	Error            int              `json:"error"`
	ConsecutiveError int              `json:"consecutiveError"`
	Message          string           `json:"message"`
	Measurements     []Measurement    `json:"measurements"` // most recent last, bounded
}

// Measurement is one measurement of a metric.
type Measurement struct {
	Phase MeasurementPhase `json:"phase"`
	// Value is the result as text, e.g. "[0.012]" (Argo shows it the same way).
	Value string `json:"value"`
	// Values holds the numeric result when it has one, for charts (at most 64). In JSON,
	// NaN, +Inf and -Inf are the strings "NaN", "+Inf", "-Inf".
	Values []float64 `json:"values,omitempty"`
	// Details carries provider-specific figures, e.g. the judge's estimate and bound.
	Details map[string]float64 `json:"details,omitempty"`
	// Message says why: the condition that held or failed, or the error.
	Message    string    `json:"message"`
	StartedAt  time.Time `json:"startedAt"`
	FinishedAt time.Time `json:"finishedAt"`
	// ProviderState, set by a provider that keeps state between measurements (the
	// judge), goes into MetricRun.ProviderState; it is not part of the measurement's JSON.
	ProviderState json.RawMessage `json:"-"`
}
