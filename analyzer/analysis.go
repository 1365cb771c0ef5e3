package analyzer

import (
	"fmt"
	"time"

	"github.com/sluice-mesh/sluice/model"
)

// Analysis runs, as Argo's analysis/analysis.go runs an AnalysisRun:
//
//   - schedule (generateMetricTasks): a metric is measured after initialDelay, then every
//     interval (10 s after an Error), until its effective count is reached; a run that is
//     terminating takes no new measurement.
//   - record (runMeasurements): every answer is recorded with its counters, including the
//     sibling measurements of the tick in which the run ended.
//   - assessRuns (assessRunStatus): a run is assessed once every measurement it asked for
//     is back, as Argo assesses after all of a reconcile's measurements; it ends Failed,
//     Error or Inconclusive as soon as a metric that is not dry-run is (the worst wins),
//     and Successful once every metric, dry-run ones included, completed.
//   - assessMetric (assessMetricStatus): Argo's limits, in Argo's order and wording.

func (m *machine) findRun(kind string, step int) *Run {
	for i := range m.st.Runs {
		if m.st.Runs[i].Kind == kind && m.st.Runs[i].Step == step {
			return &m.st.Runs[i]
		}
	}
	return nil
}

func (r *Run) metric(name string) *MetricRun {
	for i := range r.Metrics {
		if r.Metrics[i].Name == name {
			return &r.Metrics[i]
		}
	}
	return nil
}

func (m *machine) startRun(kind string, step int, ref *model.AnalysisRef) {
	m.st.NextRun++
	name := kind
	if len(ref.Templates) > 0 {
		name = ref.Templates[0].Name
	}
	r := Run{ID: m.st.NextRun, Name: name, Kind: kind, Step: step, Phase: MeasurementRunning, StartedAt: m.now}
	for _, mt := range ref.Metrics {
		r.Metrics = append(r.Metrics, MetricRun{Name: mt.Name, Phase: MeasurementPending, NextAt: m.now.Add(mt.InitialDelay)})
	}
	if len(r.Metrics) == 0 {
		r.Phase, r.Done, r.Message = MeasurementSuccessful, true, "no metrics"
	}
	m.st.Runs = append(m.st.Runs, r)
}

// metricsOf returns the metric specs of run r.
func (m *machine) metricsOf(r *Run) []model.Metric {
	return RunMetrics(m.r, r.Kind, r.Step)
}

// RunMetrics returns the metrics of the analysis run of the given kind and step.
func RunMetrics(ro *model.Rollout, kind string, step int) []model.Metric {
	switch kind {
	case KindInline:
		if ro.Canary != nil && step < len(ro.Canary.Steps) && ro.Canary.Steps[step].Analysis != nil {
			return ro.Canary.Steps[step].Analysis.Metrics
		}
	case KindBackground:
		if ro.Canary != nil && ro.Canary.Analysis != nil {
			return ro.Canary.Analysis.Metrics
		}
	case KindPrePromotion:
		if ro.BlueGreen != nil && ro.BlueGreen.PrePromotionAnalysis != nil {
			return ro.BlueGreen.PrePromotionAnalysis.Metrics
		}
	case KindPostPromotion:
		if ro.BlueGreen != nil && ro.BlueGreen.PostPromotionAnalysis != nil {
			return ro.BlueGreen.PostPromotionAnalysis.Metrics
		}
	}
	return nil
}

func metricSpec(specs []model.Metric, name string) *model.Metric {
	for i := range specs {
		if specs[i].Name == name {
			return &specs[i]
		}
	}
	return nil
}

// record stores an answered measurement in its metric, with Argo's bookkeeping: Successful,
// Failed and Inconclusive count toward count; Error counts only toward the error streak
// and is retried after ErrorRetryInterval; LowTraffic and Running are shown, not counted.
// An answer to a measurement asked for before its run ended (a sibling of the
// measurement that decided it) is recorded too; it no longer decides anything.
func (m *machine) record(res Result) {
	r := m.st.run(res.Run)
	if r == nil {
		return
	}
	mr := r.metric(res.Metric)
	if mr == nil || !mr.InFlight {
		return // not asked for (or asked before a restart)
	}
	mr.InFlight = false
	spec := metricSpec(m.metricsOf(r), res.Metric)
	if spec == nil {
		return
	}
	ms := res.Measurement
	if len(ms.ProviderState) > 0 {
		mr.ProviderState = ms.ProviderState
		ms.ProviderState = nil
	}
	if ms.FinishedAt.IsZero() {
		ms.FinishedAt = m.now
	}
	if len(ms.Values) > maxValues {
		ms.Values = append([]float64(nil), ms.Values[:maxValues]...)
	}
	mr.Measurements = append(mr.Measurements, ms)
	if len(mr.Measurements) > maxMeasurements {
		mr.Measurements = mr.Measurements[len(mr.Measurements)-maxMeasurements:]
	}
	mr.Message = ms.Message
	retry := spec.Interval
	if retry <= 0 {
		retry = ErrorRetryInterval
	}
	switch ms.Phase {
	case MeasurementSuccessful:
		mr.Count++
		mr.Successful++
		mr.ConsecutiveError = 0
		mr.ConsecutiveSuccess++
		mr.NextAt = ms.FinishedAt.Add(spec.Interval)
	case MeasurementFailed:
		mr.Count++
		mr.Failed++
		mr.ConsecutiveError, mr.ConsecutiveSuccess = 0, 0
		mr.NextAt = ms.FinishedAt.Add(spec.Interval)
	case MeasurementInconclusive:
		mr.Count++
		mr.Inconclusive++
		mr.ConsecutiveError, mr.ConsecutiveSuccess = 0, 0
		mr.NextAt = ms.FinishedAt.Add(spec.Interval)
	case MeasurementError:
		mr.Error++
		mr.ConsecutiveError++
		mr.ConsecutiveSuccess = 0
		mr.NextAt = ms.FinishedAt.Add(ErrorRetryInterval)
	case MeasurementLowTraffic:
		mr.LowTraffic++
		mr.NextAt = ms.FinishedAt.Add(retry)
	default: // Running: keep measuring, not counted
		mr.NextAt = ms.FinishedAt.Add(retry)
	}
	if r.Done && !mr.Phase.completed() {
		// The run ended while this measurement was on its way: Argo terminates it.
		phase, why := assessMetric(spec, mr, true)
		mr.Phase = phase
		if why != "" {
			mr.Message = why
		}
	}
}

// assessRuns assesses every live run that has no measurement in flight.
func (m *machine) assessRuns() {
	for i := range m.st.Runs {
		r := &m.st.Runs[i]
		if r.Done || r.inFlight() {
			continue
		}
		m.assessRun(r)
	}
}

func (r *Run) inFlight() bool {
	for _, mr := range r.Metrics {
		if mr.InFlight {
			return true
		}
	}
	return false
}

// phaseRank orders completed phases from best to worst (Argo's analysisStatusOrder).
func phaseRank(p MeasurementPhase) int {
	switch p {
	case MeasurementInconclusive:
		return 1
	case MeasurementError:
		return 2
	case MeasurementFailed:
		return 3
	}
	return 0
}

// assessRun updates each metric's phase and decides the run (Argo's assessRunStatus).
func (m *machine) assessRun(r *Run) {
	specs := m.metricsOf(r)
	worst, worstMsg := MeasurementPhase(""), ""
	everything := true
	for i := range r.Metrics {
		mr := &r.Metrics[i]
		spec := metricSpec(specs, mr.Name)
		if spec == nil {
			continue
		}
		if !mr.Phase.completed() {
			phase, why := assessMetric(spec, mr, false)
			if phase.completed() && why != "" {
				last := mr.Message
				mr.Message = why
				if last != "" {
					mr.Message += ": " + last
				}
			}
			mr.Phase = phase
		}
		if !mr.Phase.completed() {
			everything = false
			continue
		}
		if spec.DryRun {
			continue // measured and shown, never decides
		}
		if worst == "" || phaseRank(mr.Phase) > phaseRank(worst) {
			worst = mr.Phase
			worstMsg = fmt.Sprintf("metric %q assessed %s: %s", mr.Name, mr.Phase, mr.Message)
			if n := len(mr.Measurements); n > 0 && mr.Measurements[n-1].Value != "" {
				worstMsg += " (last value " + mr.Measurements[n-1].Value + ")"
			}
		}
	}
	switch {
	case phaseRank(worst) > 0:
		// A metric that is not dry-run failed, errored or is inconclusive: the run is
		// terminating (Argo's IsTerminating) and ends with the worst phase.
		m.endRun(r, worst, worstMsg)
	case everything:
		m.endRun(r, MeasurementSuccessful, "all metrics completed")
	}
}

// assessMetric is Argo's assessMetricStatus for one metric that has not completed:
// failure, inconclusive and error limits (in Argo's order: the last that applies wins),
// then consecutiveSuccessLimit, then the count. It returns the phase and, for a
// completed one, why ("failed (2) > failureLimit (1)"). terminating: the run has ended;
// a metric that has not completed then is Terminated.
func assessMetric(spec *model.Metric, mr *MetricRun, terminating bool) (MeasurementPhase, string) {
	if mr.Count+mr.Error == 0 {
		if terminating {
			return MeasurementTerminated, "run ended before this metric was measured"
		}
		if len(mr.Measurements) == 0 {
			return MeasurementPending, ""
		}
		return MeasurementRunning, "" // only LowTraffic or Running answers so far
	}
	var phase MeasurementPhase
	var why string
	if spec.FailureLimit >= 0 && mr.Failed > spec.FailureLimit {
		phase, why = MeasurementFailed, fmt.Sprintf("failed (%d) > failureLimit (%d)", mr.Failed, spec.FailureLimit)
	}
	if mr.Inconclusive > spec.InconclusiveLimit {
		phase, why = MeasurementInconclusive, fmt.Sprintf("inconclusive (%d) > inconclusiveLimit (%d)", mr.Inconclusive, spec.InconclusiveLimit)
	}
	if spec.ConsecutiveErrorLimit >= 0 && mr.ConsecutiveError > spec.ConsecutiveErrorLimit {
		phase, why = MeasurementError, fmt.Sprintf("consecutiveErrors (%d) > consecutiveErrorLimit (%d)", mr.ConsecutiveError, spec.ConsecutiveErrorLimit)
	}
	if phase != "" {
		return phase, why
	}
	csl := spec.ConsecutiveSuccessLimit
	if csl > 0 && mr.ConsecutiveSuccess >= csl {
		return MeasurementSuccessful, fmt.Sprintf("consecutiveSuccessLimit (%d) reached", csl)
	}
	if n := effectiveCount(spec); n > 0 && mr.Count >= n {
		switch failureApplies := spec.FailureLimit >= 0; {
		case csl > 0 && failureApplies:
			return MeasurementInconclusive, fmt.Sprintf("count (%d) reached; consecutiveSuccessLimit (%d) not reached and failureLimit (%d) not violated", n, csl, spec.FailureLimit)
		case csl > 0:
			return MeasurementFailed, fmt.Sprintf("count (%d) reached; consecutiveSuccessLimit (%d) not reached", n, csl)
		}
		return MeasurementSuccessful, fmt.Sprintf("count (%d) reached", n)
	}
	if terminating {
		return MeasurementTerminated, fmt.Sprintf("run ended after %d of its measurements", mr.Count)
	}
	return MeasurementRunning, ""
}

// AssessMetric returns a metric's phase from its counters with Argo's rules (see
// assessMetric); a completed phase stays.
func AssessMetric(spec *model.Metric, mr *MetricRun) MeasurementPhase {
	if mr.Phase.completed() {
		return mr.Phase
	}
	p, _ := assessMetric(spec, mr, false)
	return p
}

// effectiveCount is Argo's Metric.EffectiveCount: count; with neither count nor
// interval 1; with an interval and no count 0 (measure until the run is stopped).
func effectiveCount(spec *model.Metric) int {
	if spec.Count > 0 {
		return spec.Count
	}
	if spec.Interval <= 0 {
		return 1
	}
	return 0
}

// endRun ends run r with phase and msg. Metrics still measuring are Terminated, unless
// a measurement of theirs is on its way (record finishes them); the providers are told
// (TerminateAction).
func (m *machine) endRun(r *Run, phase MeasurementPhase, msg string) {
	if r.Done {
		return
	}
	r.Phase, r.Message, r.Done = phase, msg, true
	specs := m.metricsOf(r)
	names := make([]string, 0, len(r.Metrics))
	for j := range r.Metrics {
		mr := &r.Metrics[j]
		names = append(names, mr.Name)
		if mr.Phase.completed() || mr.InFlight {
			continue
		}
		if spec := metricSpec(specs, mr.Name); spec != nil {
			p, why := assessMetric(spec, mr, true)
			mr.Phase, mr.Message = p, why
		} else {
			mr.Phase, mr.Message = MeasurementTerminated, "run ended"
		}
	}
	m.actions = append(m.actions, &TerminateAction{Run: r.ID, Metrics: names})
}

// terminateRuns ends every live run because the rollout moved on (Argo's
// cancelAnalysisRuns): a run that had not decided ends Successful ("Run Terminated"), as
// in Argo; its unfinished metrics show Terminated.
func (m *machine) terminateRuns(why string) {
	for i := range m.st.Runs {
		if r := &m.st.Runs[i]; !r.Done {
			m.endRun(r, MeasurementSuccessful, "run terminated: "+why)
		}
	}
}

// schedule asks for the measurements that are due (Argo's generateMetricTasks).
func (m *machine) schedule() {
	if m.st.Aborted || m.st.Completed {
		return
	}
	for i := range m.st.Runs {
		r := &m.st.Runs[i]
		if r.Done {
			continue
		}
		specs := m.metricsOf(r)
		for j := range r.Metrics {
			mr := &r.Metrics[j]
			if mr.InFlight || mr.Phase.completed() || m.now.Before(mr.NextAt) {
				continue
			}
			spec := metricSpec(specs, mr.Name)
			if spec == nil {
				continue
			}
			mr.InFlight = true
			if mr.Phase == MeasurementPending {
				mr.Phase = MeasurementRunning
			}
			m.actions = append(m.actions, &MeasureAction{Run: r.ID, Kind: r.Kind, Metric: *spec,
				ProviderState: append([]byte(nil), mr.ProviderState...)})
		}
	}
}

// NextWake returns when Step should run next without new inputs (zero: nothing timed).
func NextWake(st *State) time.Time {
	var t time.Time
	earlier := func(x time.Time) {
		if t.IsZero() || x.Before(t) {
			t = x
		}
	}
	if st.PauseUntil != nil {
		earlier(*st.PauseUntil)
	}
	for _, r := range st.Runs {
		if r.Done {
			continue
		}
		for _, mr := range r.Metrics {
			if !mr.InFlight && !mr.Phase.completed() {
				earlier(mr.NextAt)
			}
		}
	}
	return t
}
