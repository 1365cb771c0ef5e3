package analyzer

import (
	"fmt"
	"strings"

	"github.com/sluice-mesh/sluice/model"
)

// StatusOf renders a rollout's state as the admin API's JSON shape.
func StatusOf(r *model.Rollout, st *State) RolloutStatus {
	s := RolloutStatus{
		Name: r.Name, Strategy: string(r.Strategy), Revision: st.Revision, Phase: st.Phase,
		Step: st.Step, SetWeight: st.SetWeight, ActualWeight: max(st.ActualWeight, 0),
		Message: st.Message, Aborted: st.Aborted, StableService: st.Stable, CanaryService: st.Canary,
		AbortLatencySeconds: st.AbortLatency, AbortCause: st.AbortCause, UpdatedAt: st.UpdatedAt,
		History:      append([]WeightPoint{}, st.History...),
		AnalysisRuns: []AnalysisRunStatus{},
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
	for _, run := range st.Runs {
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
		s.AnalysisRuns = append(s.AnalysisRuns, rs)
	}
	return s
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
