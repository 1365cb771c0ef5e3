package analyzer

import (
	"github.com/sluice-mesh/sluice/model"
)

// StatusOf renders a rollout's state as the admin API's JSON shape.
func StatusOf(r *model.Rollout, st *State) RolloutStatus {
	s := RolloutStatus{
		Name: r.Name, Strategy: string(r.Strategy), Revision: st.Revision, Phase: st.Phase,
		Step: st.Step, SetWeight: st.SetWeight, ActualWeight: max(st.ActualWeight, 0),
		Message: st.Message, Aborted: st.Aborted, StableService: st.Stable, CanaryService: st.Canary,
		AbortLatencySeconds: st.AbortLatency, UpdatedAt: st.UpdatedAt,
		History:      append([]WeightPoint{}, st.History...),
		AnalysisRuns: []AnalysisRunStatus{},
	}
	if r.Canary != nil {
		s.Steps = len(r.Canary.Steps)
	} else {
		s.Steps = 1 // blue/green: step 0 is the preview, step 1 the switch
	}
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
