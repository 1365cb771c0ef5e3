package analyzer

import (
	"fmt"
	"strings"
	"time"

	"github.com/sluice-mesh/sluice/model"
)

// StatusOf renders a rollout's state as the admin API's JSON shape. What the controller
// knows beyond the state (cluster health, recent events, a refused reload, an unsaved
// state) it adds itself.
func StatusOf(r *model.Rollout, st *State) RolloutStatus {
	s := RolloutStatus{
		Name: r.Name, Strategy: string(r.Strategy), Revision: st.Revision, Phase: st.Phase,
		Step: st.Step, SetWeight: st.SetWeight, ActualWeight: max(st.ActualWeight, 0),
		Message: st.Message, Aborted: st.Aborted, StableService: st.Stable, CanaryService: st.Canary,
		AbortLatencySeconds: st.AbortLatency, AbortCause: st.AbortCause, UpdatedAt: st.UpdatedAt,
		StartedAt: st.StartedAt, History: append([]WeightPoint{}, st.History...),
		AnalysisRuns: runStatuses(r, st.Runs), Clusters: []ClusterStatus{}, Events: []Event{},
		Releases: []ReleaseStatus{}, Actions: []CommandKind{},
	}
	if r.Canary != nil {
		s.Steps = len(r.Canary.Steps)
	} else {
		s.Steps = 1 // blue/green: step 0 is the preview, step 1 the switch
	}
	s.StepList = stepList(r, st)
	if st.PauseUntil != nil {
		t := *st.PauseUntil
		s.PauseEndsAt = &t
	}
	s.Waiting, s.WaitDeadline = waitingFor(r, st)
	for _, c := range []CommandKind{CmdPromote, CmdPromoteFull, CmdAbort, CmdRetry, CmdStart} {
		if CheckCommand(st, c) == nil {
			s.Actions = append(s.Actions, c)
		}
	}
	for _, rel := range st.Releases {
		s.Releases = append(s.Releases, ReleaseStatus{Revision: rel.Revision, StableService: rel.Stable,
			CanaryService: rel.Canary, Outcome: rel.Outcome, Reason: rel.Reason, AbortCause: rel.AbortCause,
			Step: rel.Step, Weight: rel.Weight, StartedAt: rel.StartedAt, EndedAt: rel.EndedAt,
			History: append([]WeightPoint{}, rel.History...), AnalysisRuns: runStatuses(r, rel.Runs)})
	}
	return s
}

// runStatuses renders analysis runs with their metrics' specs (conditions, provider)
// from r; a metric r no longer has (an earlier release's) shows without them.
func runStatuses(r *model.Rollout, runs []Run) []AnalysisRunStatus {
	out := []AnalysisRunStatus{}
	for _, run := range runs {
		specs := RunMetrics(r, run.Kind, run.Step)
		rs := AnalysisRunStatus{Name: run.Name, Kind: run.Kind, Step: run.Step, Phase: run.Phase, Message: run.Message,
			Metrics: []MetricStatus{}}
		for _, mr := range run.Metrics {
			ms := MetricStatus{Name: mr.Name, Phase: mr.Phase, Count: mr.Count, Successful: mr.Successful,
				Failed: mr.Failed, Inconclusive: mr.Inconclusive, Error: mr.Error,
				ConsecutiveError: mr.ConsecutiveError, Message: mr.Message,
				Measurements: append([]Measurement{}, mr.Measurements...)}
			if spec := metricSpec(specs, mr.Name); spec != nil {
				ms.SuccessCondition, ms.FailureCondition, ms.DryRun = spec.SuccessCondition, spec.FailureCondition, spec.DryRun
				switch p := spec.Provider; {
				case p.Prometheus != nil && p.Prometheus.Address == "":
					ms.Provider, ms.Query = "prometheus(embedded)", p.Prometheus.Query
				case p.Prometheus != nil:
					ms.Provider, ms.Query = "prometheus", p.Prometheus.Query
				case p.Web != nil:
					ms.Provider, ms.Query = "web", p.Web.URL
				case p.Judge != nil:
					ms.Provider, ms.Query = "judge", p.Judge.Signal
				}
			}
			rs.Metrics = append(rs.Metrics, ms)
		}
		out = append(out, rs)
	}
	return out
}

// waitingFor says what the current step of st waits for, and until when that wait lasts
// on its own (see RolloutStatus.Waiting).
func waitingFor(r *model.Rollout, st *State) (string, *time.Time) {
	at := func(t time.Time) *time.Time { return &t }
	switch {
	case st.Aborted || st.Completed:
		return "", nil
	case st.HealthWaitSince != nil:
		d := r.ProgressDeadline
		if d <= 0 {
			d = DefaultProgressDeadline
		}
		return st.Message + "; the rollout aborts at the deadline if none is healthy by then", at(st.HealthWaitSince.Add(d))
	case st.Gen != st.AppliedGen:
		return fmt.Sprintf("the data planes to apply weight %d (xDS: every connected proxy's ACK)", st.SetWeight), nil
	case st.Paused:
		return "an operator: sluice promote continues, sluice abort sends every request back to " + st.Stable, nil
	case st.PauseUntil != nil:
		if r.BlueGreen != nil {
			return "auto promotion (autoPromotionSeconds)", at(*st.PauseUntil)
		}
		return "the timed pause to end", at(*st.PauseUntil)
	}
	for i := range st.Runs {
		run := &st.Runs[i]
		if run.Done || !gatesStep(r, st, run) {
			continue
		}
		var parts []string
		for _, mr := range run.Metrics {
			if mr.Phase.completed() {
				continue
			}
			part := mr.Name + ": measuring"
			if n := len(mr.Measurements); n > 0 {
				last := mr.Measurements[n-1]
				part = mr.Name + ": " + string(last.Phase)
				if last.Phase == MeasurementLowTraffic || last.Phase == MeasurementRunning {
					part += " (" + last.Message + ")"
				}
			}
			parts = append(parts, part)
		}
		return "analysis " + run.Name + " — " + strings.Join(parts, "; "), nil
	}
	if bg := r.BlueGreen; bg != nil && st.Switched && st.SwitchedAt != nil {
		return "the abort window to close (scaleDownDelaySeconds): until then abort switches back to " + st.Stable,
			at(st.SwitchedAt.Add(time.Duration(bg.ScaleDownDelaySeconds) * time.Second))
	}
	return "", nil
}

// gatesStep reports whether run holds the current step back: the inline analysis of the
// current step, or blue/green's pre-promotion (before the switch) or post-promotion
// (after it) analysis. A background analysis runs beside the steps.
func gatesStep(r *model.Rollout, st *State, run *Run) bool {
	switch run.Kind {
	case KindInline:
		return run.Step == st.Step
	case KindPrePromotion:
		return !st.Switched
	case KindPostPromotion:
		return st.Switched && !run.Acknowledged
	}
	return false
}

// stepList describes r's steps with st's progress: done before st.Step, current at it.
func stepList(r *model.Rollout, st *State) []StepStatus {
	var out []StepStatus
	add := func(kind, text string) {
		i := len(out)
		state := "pending"
		switch {
		case i < st.Step || st.Completed:
			state = "done"
		case i == st.Step && st.Aborted:
			state = "aborted"
		case i == st.Step:
			state = "current"
		}
		out = append(out, StepStatus{Index: i, Kind: kind, Text: text, State: state})
	}
	if r.BlueGreen != nil {
		add("preview", "preview "+st.Canary)
		add("switch", "switch to "+st.Canary)
		return out
	}
	if r.Canary == nil {
		return []StepStatus{}
	}
	for _, s := range r.Canary.Steps {
		switch {
		case s.Ignored:
			add("ignored", "skipped (Kubernetes-only)")
		case s.SetWeight != nil:
			add("setWeight", fmt.Sprintf("setWeight %d", *s.SetWeight))
		case s.Pause != nil && s.Pause.Duration == nil:
			add("pause", "pause until promoted")
		case s.Pause != nil:
			add("pause", "pause "+s.Pause.Duration.String())
		case s.Analysis != nil:
			var names []string
			for _, t := range s.Analysis.Templates {
				names = append(names, t.Name)
			}
			add("analysis", "analysis "+strings.Join(names, ", "))
		case s.SetHeaderRoute != nil:
			add("setHeaderRoute", "setHeaderRoute "+s.SetHeaderRoute.Name)
		case s.SetMirrorRoute != nil:
			add("setMirrorRoute", "setMirrorRoute "+s.SetMirrorRoute.Name)
		default:
			add("empty", "empty step")
		}
	}
	if out == nil {
		out = []StepStatus{}
	}
	return out
}
