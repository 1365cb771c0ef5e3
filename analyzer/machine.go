package analyzer

import (
	"errors"
	"fmt"
	"time"

	"github.com/sluice-mesh/sluice/model"
)

// ErrorRetryInterval is how soon a metric is measured again after an Error (Argo's
// DefaultErrorRetryInterval); also after LowTraffic or Running when the metric has no
// interval of its own.
const ErrorRetryInterval = 10 * time.Second

// Result is a finished measurement coming back to the machine. Measurement.Phase is
// Successful, Failed, Inconclusive or Error (counted), or Running or LowTraffic (shown,
// not counted: the metric measures again later).
type Result struct {
	Run         int
	Metric      string
	Measurement Measurement
}

// Applied reports that the data planes applied (Err nil) or refused (NACK, ACK timeout)
// the routing of generation Gen.
type Applied struct {
	Gen uint64
	// Weight is the canary weight of that generation.
	Weight int
	Err    error
	At     time.Time
}

// CommandKind is an operator command.
type CommandKind string

// Operator commands.
const (
	CmdPromote     CommandKind = "promote"
	CmdPromoteFull CommandKind = "promoteFull"
	CmdAbort       CommandKind = "abort"
	CmdRetry       CommandKind = "retry"
	CmdStart       CommandKind = "start"
)

// Inputs is everything that happened since the last Step.
type Inputs struct {
	Results  []Result
	Applied  []Applied
	Commands []CommandKind
}

// Action is something the Controller must do after a Step: *MeasureAction or *Event.
type Action interface{ isAction() }

// MeasureAction asks for one measurement of a metric; its Result goes back into Step.
type MeasureAction struct {
	Run    int
	Kind   string
	Metric model.Metric
}

// Event types.
const (
	EventStarted        = "started"
	EventStepCompleted  = "stepCompleted"
	EventPaused         = "paused"
	EventResumed        = "resumed"
	EventAborted        = "aborted"
	EventPromoted       = "promoted"
	EventAnalysisFailed = "analysisFailed"
)

// Event is a rollout event: logged, counted, and POSTed to webhooks.
type Event struct {
	Type     string    `json:"type"`
	Rollout  string    `json:"rollout"`
	Revision string    `json:"revision"`
	Step     int       `json:"step"`
	Weight   int       `json:"weight"`
	Message  string    `json:"message"`
	Time     time.Time `json:"time"`
}

func (*MeasureAction) isAction() {}
func (*Event) isAction()         {}

// NewState returns the state of a fresh release of r, starting at step 0 with weight 0.
// prev, when non-nil, is the state of the previous release: if it completed (the canary
// serves 100%), the roles swap so that the cluster serving traffic becomes the stable.
func NewState(r *model.Rollout, prev *State, now time.Time) State {
	stable, canary := services(r)
	if prev != nil && prev.Completed && !prev.Aborted && prev.Canary != "" {
		stable, canary = prev.Canary, prev.Stable
	}
	st := State{
		Rollout: r.Name, Revision: r.Revision, Stable: stable, Canary: canary,
		Phase: PhaseProgressing, StartedAt: now, UpdatedAt: now,
	}
	st.Gen = 1 // the routing of a new release must be applied before its first step
	if prev != nil {
		st.Gen, st.AppliedGen = prev.Gen+1, prev.AppliedGen
		st.NextRun = prev.NextRun
		st.ActualWeight = prev.ActualWeight
		if st.Stable != prev.Stable {
			st.ActualWeight = 100 - prev.ActualWeight
		}
	}
	st.History = []WeightPoint{{Time: now}}
	return st
}

// services returns the spec's stable and canary clusters (blue/green: active, preview).
func services(r *model.Rollout) (string, string) {
	if r.BlueGreen != nil {
		return r.BlueGreen.ActiveService, r.BlueGreen.PreviewService
	}
	if r.Canary != nil {
		return r.Canary.StableService, r.Canary.CanaryService
	}
	return "", ""
}

// Errors returned by CheckCommand.
var (
	ErrNotPaused   = errors.New("rollout is not paused or progressing")
	ErrNotAborted  = errors.New("rollout is not aborted")
	ErrInProgress  = errors.New("rollout is in progress: abort it first")
	ErrIsAborted   = errors.New("rollout is aborted: retry or start it")
	ErrIsCompleted = errors.New("rollout is completed: start a new release")
)

// CheckCommand reports whether cmd makes sense in state st.
func CheckCommand(st *State, cmd CommandKind) error {
	switch cmd {
	case CmdPromote, CmdPromoteFull:
		if st.Aborted {
			return ErrIsAborted
		}
		if st.Completed {
			return ErrIsCompleted
		}
	case CmdAbort:
		if st.Completed {
			return ErrIsCompleted
		}
	case CmdRetry:
		if !st.Aborted {
			return ErrNotAborted
		}
	case CmdStart:
		if !st.Aborted && !st.Completed {
			return ErrInProgress
		}
	default:
		return fmt.Errorf("unknown command %q", cmd)
	}
	return nil
}

// machine is one Step call's working set.
type machine struct {
	r       *model.Rollout
	st      State
	now     time.Time
	actions []Action
}

// Step advances rollout r from state st at time now with the given inputs, and returns
// the new state and what to do. It is pure: no I/O, no clock, no randomness. The caller
// persists the new state before acting on it, and applies the routing (Gen) it wants.
func Step(r *model.Rollout, st State, now time.Time, in Inputs) (State, []Action) {
	m := &machine{r: r, st: st.clone(), now: now}
	for _, a := range in.Applied {
		m.applied(a)
	}
	for _, res := range in.Results {
		m.result(res)
	}
	for _, c := range in.Commands {
		m.command(c)
	}
	for i := 0; i < 64; i++ { // bounded: every iteration either stops or moves forward
		if !m.advance() {
			break
		}
	}
	m.schedule()
	m.st.UpdatedAt = now
	m.history()
	return m.st, m.actions
}

func (m *machine) event(typ, msg string) {
	m.actions = append(m.actions, &Event{
		Type: typ, Rollout: m.r.Name, Revision: m.st.Revision, Step: m.st.Step,
		Weight: m.st.SetWeight, Message: msg, Time: m.now,
	})
}

func (m *machine) history() {
	h := m.st.History
	aw := max(m.st.ActualWeight, 0)
	if len(h) > 0 && h[len(h)-1].SetWeight == m.st.SetWeight && h[len(h)-1].ActualWeight == aw {
		return
	}
	m.st.History = append(h, WeightPoint{Time: m.now, SetWeight: m.st.SetWeight, ActualWeight: aw})
	if len(m.st.History) > 200 {
		m.st.History = m.st.History[len(m.st.History)-200:]
	}
}

// routingSettled reports whether the data planes serve what the state wants.
func (m *machine) routingSettled() bool { return m.st.AppliedGen == m.st.Gen }

func (m *machine) setRouting(weight int, hr []model.HeaderRoute, mirrors []model.Mirror) {
	m.st.SetWeight = weight
	m.st.HeaderRoutes = hr
	m.st.Mirrors = mirrors
	m.st.Gen++
}

func (m *machine) applied(a Applied) {
	if a.Gen != m.st.Gen {
		return // stale: a newer routing is wanted already
	}
	if a.Err != nil {
		if m.st.Aborted {
			// Nothing safer to fall back to: keep wanting weight 0; the controller retries.
			m.st.Message = "abort not applied: " + a.Err.Error()
			return
		}
		m.abort(a.At, "data plane refused the change: "+a.Err.Error())
		return
	}
	m.st.AppliedGen = a.Gen
	m.st.ActualWeight = a.Weight
	if m.st.Aborted && a.Weight == 0 && m.st.AbortCauseAt != nil && m.st.AbortLatency == nil {
		l := a.At.Sub(*m.st.AbortCauseAt).Seconds()
		m.st.AbortLatency = &l
	}
}

func (m *machine) abort(causeAt time.Time, msg string) {
	if m.st.Aborted || m.st.Completed {
		return
	}
	m.st.Aborted = true
	m.st.Paused = false
	m.st.PauseUntil = nil
	m.st.Phase = PhaseDegraded
	m.st.Message = "aborted: " + msg
	m.st.AbortCauseAt = &causeAt
	m.st.AbortLatency = nil
	m.terminateRuns()
	m.setRouting(0, nil, nil)
	m.event(EventAborted, msg)
}

func (m *machine) terminateRuns() {
	for i := range m.st.Runs {
		r := &m.st.Runs[i]
		if r.Done {
			continue
		}
		r.Done = true
		if !r.Phase.completed() {
			r.Phase = MeasurementSuccessful
			r.Message = "terminated"
		}
		for j := range r.Metrics {
			r.Metrics[j].InFlight = false
		}
	}
}

func (m *machine) command(c CommandKind) {
	if CheckCommand(&m.st, c) != nil {
		return
	}
	switch c {
	case CmdAbort:
		m.abort(m.now, "aborted by operator")
	case CmdPromoteFull:
		m.st.Paused, m.st.PauseUntil = false, nil
		m.terminateRuns()
		m.complete("promoted --full by operator")
	case CmdPromote:
		m.promote()
	case CmdRetry:
		prevAbort := m.st
		m.st = State{
			Rollout: m.r.Name, Revision: m.r.Revision, Stable: prevAbort.Stable, Canary: prevAbort.Canary,
			Phase: PhaseProgressing, StartedAt: m.now, Gen: prevAbort.Gen, AppliedGen: prevAbort.AppliedGen,
			ActualWeight: prevAbort.ActualWeight, SetWeight: prevAbort.SetWeight, NextRun: prevAbort.NextRun,
			History: prevAbort.History,
		}
		m.event(EventStarted, "retried from step 0")
	case CmdStart:
		prev := m.st
		m.st = NewState(m.r, &prev, m.now)
		m.st.History = prev.History
		m.event(EventStarted, fmt.Sprintf("release %s started: stable %s, canary %s", m.st.Revision, m.st.Stable, m.st.Canary))
	}
}

// promote ends the current pause, or skips the current pause or analysis step.
func (m *machine) promote() {
	wasPaused := m.st.Paused || m.st.PauseUntil != nil
	m.st.Paused, m.st.PauseUntil = false, nil
	if m.r.Strategy == model.StrategyBlueGreen {
		if !m.st.Switched {
			for i := range m.st.Runs {
				if m.st.Runs[i].Kind == KindPrePromotion && !m.st.Runs[i].Done {
					m.finishRun(&m.st.Runs[i], MeasurementSuccessful, "skipped by promote")
				}
			}
			m.switchOver("promoted by operator")
		}
		return
	}
	// An inconclusive background analysis is acknowledged; a new one starts.
	for i := range m.st.Runs {
		r := &m.st.Runs[i]
		if r.Kind == KindBackground && r.Phase == MeasurementInconclusive {
			r.Acknowledged = true
		}
	}
	steps := m.r.Canary.Steps
	if m.st.Step < len(steps) {
		s := steps[m.st.Step]
		if s.Pause != nil || s.Analysis != nil || wasPaused {
			for i := range m.st.Runs {
				r := &m.st.Runs[i]
				if r.Kind == KindInline && r.Step == m.st.Step && !r.Done {
					m.finishRun(r, MeasurementSuccessful, "skipped by promote")
				}
			}
			m.stepDone("promoted by operator")
		}
	}
	m.st.Phase = PhaseProgressing
	m.event(EventResumed, "promoted by operator")
}

func (m *machine) stepDone(msg string) {
	m.event(EventStepCompleted, msg)
	m.st.Step++
}

// complete makes the canary the one serving 100%; Completed once applied.
func (m *machine) complete(msg string) {
	if m.r.Canary != nil {
		m.st.Step = len(m.r.Canary.Steps)
	}
	if m.st.SetWeight != 100 || len(m.st.HeaderRoutes) > 0 || len(m.st.Mirrors) > 0 {
		m.setRouting(100, nil, nil)
	}
	m.st.Message = msg
	m.st.Phase = PhaseProgressing
}

// advance makes one move; it reports whether another might follow.
func (m *machine) advance() bool {
	st := &m.st
	if st.Aborted {
		st.Phase = PhaseDegraded
		return false
	}
	if st.Completed {
		st.Phase = PhaseHealthy
		return false
	}
	if m.checkRuns() {
		return true
	}
	if st.Aborted {
		return false
	}
	if m.r.Strategy == model.StrategyBlueGreen {
		return m.advanceBlueGreen()
	}
	return m.advanceCanary()
}

// checkRuns applies decided analysis runs: Failed/Error abort, Inconclusive pauses.
func (m *machine) checkRuns() bool {
	for i := range m.st.Runs {
		r := &m.st.Runs[i]
		if (r.Kind != KindBackground && r.Kind != KindPostPromotion) || r.Acknowledged {
			continue // inline and pre-promotion runs gate their own step
		}
		if r.Done && (r.Phase == MeasurementFailed || r.Phase == MeasurementError) {
			at := m.lastFinished(r)
			m.event(EventAnalysisFailed, r.Name+": "+r.Message)
			m.abort(at, "analysis "+r.Name+" "+string(r.Phase)+": "+r.Message)
			return false
		}
		if r.Phase == MeasurementInconclusive && !m.st.Paused {
			m.st.Paused = true
			m.st.Phase = PhasePaused
			m.st.Message = "analysis " + r.Name + " inconclusive: " + r.Message + "; promote to continue, or abort"
			m.event(EventPaused, m.st.Message)
			return false
		}
	}
	return false
}

func (m *machine) lastFinished(r *Run) time.Time {
	var t time.Time
	for _, mr := range r.Metrics {
		if n := len(mr.Measurements); n > 0 && mr.Measurements[n-1].FinishedAt.After(t) {
			t = mr.Measurements[n-1].FinishedAt
		}
	}
	if t.IsZero() {
		return m.now
	}
	return t
}

func (m *machine) advanceCanary() bool {
	st := &m.st
	c := m.r.Canary
	if st.Paused {
		st.Phase = PhasePaused
		return false
	}
	if !m.routingSettled() {
		st.Phase = PhaseProgressing
		return false
	}
	// Background analysis starts at its starting step.
	if c.Analysis != nil && st.Step >= c.Analysis.StartingStep && !m.hasRun(KindBackground, -1) {
		m.startRun(KindBackground, c.Analysis.StartingStep, &c.Analysis.AnalysisRef)
	}
	if st.Step >= len(c.Steps) {
		if st.SetWeight != 100 || len(st.HeaderRoutes) > 0 || len(st.Mirrors) > 0 {
			m.complete("all steps completed")
			return true
		}
		m.terminateRuns()
		st.Completed = true
		st.Gen++ // the canary is no longer the internal-traffic target
		st.Phase = PhaseHealthy
		st.Message = "promoted: " + st.Canary + " serves 100%"
		m.event(EventPromoted, st.Message)
		return false
	}
	s := c.Steps[st.Step]
	st.Phase = PhaseProgressing
	switch {
	case s.Ignored:
		m.stepDone("ignored step")
		return true
	case s.SetWeight != nil:
		w := min(max(*s.SetWeight, 0), 100)
		if st.SetWeight != w {
			m.setRouting(w, st.HeaderRoutes, st.Mirrors)
			st.Message = fmt.Sprintf("setting weight %d", w)
			return false
		}
		m.stepDone(fmt.Sprintf("weight %d applied", w))
		return true
	case s.Pause != nil:
		if s.Pause.Duration == nil {
			st.Paused = true
			st.Phase = PhasePaused
			st.Message = "paused: waiting for promote"
			m.event(EventPaused, st.Message)
			return false
		}
		if st.PauseUntil == nil {
			until := m.now.Add(*s.Pause.Duration)
			st.PauseUntil = &until
			st.Message = "paused until " + until.UTC().Format(time.RFC3339)
			m.event(EventPaused, st.Message)
		}
		if m.now.Before(*st.PauseUntil) {
			st.Phase = PhasePaused
			return false
		}
		st.PauseUntil = nil
		m.stepDone("pause ended")
		return true
	case s.Analysis != nil:
		r := m.findRun(KindInline, st.Step)
		if r == nil {
			m.startRun(KindInline, st.Step, s.Analysis)
			return true
		}
		switch r.Phase {
		case MeasurementSuccessful:
			m.stepDone("analysis " + r.Name + " successful")
			return true
		case MeasurementFailed, MeasurementError:
			m.event(EventAnalysisFailed, r.Name+": "+r.Message)
			m.abort(m.lastFinished(r), "analysis "+r.Name+" "+string(r.Phase)+": "+r.Message)
			return false
		case MeasurementInconclusive:
			st.Paused = true
			st.Phase = PhasePaused
			st.Message = "analysis " + r.Name + " inconclusive: " + r.Message + "; promote to continue, or abort"
			m.event(EventPaused, st.Message)
			return false
		}
		st.Message = "analysis " + r.Name + " running"
		return false
	case s.SetHeaderRoute != nil:
		hr := withoutHeaderRoute(st.HeaderRoutes, s.SetHeaderRoute.Name)
		if len(s.SetHeaderRoute.Match) > 0 {
			hr = append(hr, model.HeaderRoute{Name: s.SetHeaderRoute.Name, Headers: s.SetHeaderRoute.Match, Cluster: st.Canary})
		}
		m.setRouting(st.SetWeight, hr, st.Mirrors)
		m.stepDone("header route " + s.SetHeaderRoute.Name + " set")
		return true
	case s.SetMirrorRoute != nil:
		mr := withoutMirror(st.Mirrors, s.SetMirrorRoute.Name)
		if len(s.SetMirrorRoute.Match) > 0 {
			pct := s.SetMirrorRoute.Percentage
			if pct == 0 {
				pct = 100
			}
			mr = append(mr, model.Mirror{Name: s.SetMirrorRoute.Name, Matches: s.SetMirrorRoute.Match, Percentage: pct, Cluster: st.Canary})
		}
		m.setRouting(st.SetWeight, st.HeaderRoutes, mr)
		m.stepDone("mirror route " + s.SetMirrorRoute.Name + " set")
		return true
	}
	m.stepDone("empty step")
	return true
}

func withoutHeaderRoute(hr []model.HeaderRoute, name string) []model.HeaderRoute {
	var out []model.HeaderRoute
	for _, h := range hr {
		if h.Name != name {
			out = append(out, h)
		}
	}
	return out
}

func withoutMirror(ms []model.Mirror, name string) []model.Mirror {
	var out []model.Mirror
	for _, x := range ms {
		if x.Name != name {
			out = append(out, x)
		}
	}
	return out
}

// PreviewRouteName is the name of blue/green's preview header route.
const PreviewRouteName = "sluice-preview"

func (m *machine) advanceBlueGreen() bool {
	st := &m.st
	bg := m.r.BlueGreen
	if !st.Switched {
		if st.SetWeight != 0 || !m.hasPreviewRoute() {
			if len(bg.PreviewHeader) > 0 && !m.hasPreviewRoute() {
				m.setRouting(0, []model.HeaderRoute{{Name: PreviewRouteName, Headers: bg.PreviewHeader, Cluster: st.Canary}}, nil)
				return false
			}
			if st.SetWeight != 0 {
				m.setRouting(0, st.HeaderRoutes, nil)
				return false
			}
		}
		if !m.routingSettled() {
			st.Phase = PhaseProgressing
			return false
		}
		if st.SetWeight == 100 { // switching
			return false
		}
		if bg.PrePromotionAnalysis != nil {
			r := m.findRun(KindPrePromotion, 0)
			if r == nil {
				m.startRun(KindPrePromotion, 0, bg.PrePromotionAnalysis)
				return true
			}
			switch r.Phase {
			case MeasurementSuccessful:
			case MeasurementFailed, MeasurementError:
				m.event(EventAnalysisFailed, r.Name+": "+r.Message)
				m.abort(m.lastFinished(r), "pre-promotion analysis "+string(r.Phase)+": "+r.Message)
				return false
			case MeasurementInconclusive:
				if !st.Paused {
					st.Paused = true
					st.Phase = PhasePaused
					st.Message = "pre-promotion analysis inconclusive: " + r.Message + "; promote to switch, or abort"
					m.event(EventPaused, st.Message)
				}
				return false
			default:
				st.Phase = PhaseProgressing
				st.Message = "pre-promotion analysis running"
				return false
			}
		}
		if st.ReadyAt == nil {
			t := m.now
			st.ReadyAt = &t
		}
		if !bg.AutoPromotionEnabled {
			if !st.Paused {
				st.Paused = true
				st.Phase = PhasePaused
				st.Message = "preview ready: waiting for promote"
				m.event(EventPaused, st.Message)
			}
			return false
		}
		if bg.AutoPromotionSeconds > 0 {
			until := st.ReadyAt.Add(time.Duration(bg.AutoPromotionSeconds) * time.Second)
			if m.now.Before(until) {
				st.PauseUntil = &until
				st.Phase = PhasePaused
				st.Message = "auto promotion at " + until.UTC().Format(time.RFC3339)
				return false
			}
			st.PauseUntil = nil
		}
		m.switchOver("auto promotion")
		return true
	}
	// Switched: the preview serves 100%.
	if !m.routingSettled() {
		return false
	}
	if st.SwitchedAt == nil {
		t := m.now
		st.SwitchedAt = &t
		m.stepDone("switched: " + st.Canary + " is active")
	}
	if st.Paused {
		st.Phase = PhasePaused
		return false
	}
	if bg.PostPromotionAnalysis != nil {
		r := m.findRun(KindPostPromotion, 1)
		if r == nil {
			m.startRun(KindPostPromotion, 1, bg.PostPromotionAnalysis)
			return true
		}
		if r.Phase != MeasurementSuccessful {
			st.Phase = PhaseProgressing
			st.Message = "post-promotion analysis running; abort switches back to " + st.Stable
			return false
		}
	}
	if end := st.SwitchedAt.Add(time.Duration(bg.ScaleDownDelaySeconds) * time.Second); m.now.Before(end) {
		st.Phase = PhaseProgressing
		st.Message = "switched; abort switches back to " + st.Stable + " until " + end.UTC().Format(time.RFC3339)
		return false
	}
	m.terminateRuns()
	st.Completed = true
	st.Gen++ // the preview is no longer the internal-traffic target
	st.Phase = PhaseHealthy
	st.Message = "promoted: " + st.Canary + " is active"
	m.event(EventPromoted, st.Message)
	return false
}

func (m *machine) hasPreviewRoute() bool {
	if len(m.r.BlueGreen.PreviewHeader) == 0 {
		return true
	}
	for _, h := range m.st.HeaderRoutes {
		if h.Name == PreviewRouteName {
			return true
		}
	}
	return false
}

// switchOver is blue/green's atomic 0→100 change (the preview route goes with it).
func (m *machine) switchOver(msg string) {
	m.st.Switched = true
	m.st.Paused, m.st.PauseUntil = false, nil
	m.st.Phase = PhaseProgressing
	m.st.Message = "switching: " + msg
	m.setRouting(100, nil, nil)
}

func (m *machine) hasRun(kind string, step int) bool {
	for _, r := range m.st.Runs {
		if r.Kind == kind && !r.Acknowledged && (step < 0 || r.Step == step) {
			return true
		}
	}
	return false
}

func (m *machine) findRun(kind string, step int) *Run {
	for i := range m.st.Runs {
		if m.st.Runs[i].Kind == kind && m.st.Runs[i].Step == step {
			return &m.st.Runs[i]
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

// result records a measurement and re-assesses its metric and run.
func (m *machine) result(res Result) {
	r := m.st.run(res.Run)
	if r == nil || r.Done {
		return
	}
	specs := m.metricsOf(r)
	spec := metricSpec(specs, res.Metric)
	var mr *MetricRun
	for i := range r.Metrics {
		if r.Metrics[i].Name == res.Metric {
			mr = &r.Metrics[i]
		}
	}
	if spec == nil || mr == nil {
		return
	}
	mr.InFlight = false
	ms := res.Measurement
	if ms.FinishedAt.IsZero() {
		ms.FinishedAt = m.now
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
		mr.NextAt = ms.FinishedAt.Add(spec.Interval)
	case MeasurementFailed:
		mr.Count++
		mr.Failed++
		mr.ConsecutiveError = 0
		mr.NextAt = ms.FinishedAt.Add(spec.Interval)
	case MeasurementInconclusive:
		mr.Count++
		mr.Inconclusive++
		mr.ConsecutiveError = 0
		mr.NextAt = ms.FinishedAt.Add(spec.Interval)
	case MeasurementError:
		mr.Error++
		mr.ConsecutiveError++
		mr.NextAt = ms.FinishedAt.Add(ErrorRetryInterval)
	case MeasurementLowTraffic:
		mr.LowTraffic++
		mr.NextAt = ms.FinishedAt.Add(retry)
	default: // Running: keep measuring, not counted
		mr.NextAt = ms.FinishedAt.Add(retry)
	}
	mr.Phase = AssessMetric(spec, mr)
	m.assessRun(r, specs)
}

// AssessMetric returns a metric's phase from its counters, with Argo's rules: more
// failures than failureLimit (unless -1) → Failed; more inconclusive than
// inconclusiveLimit → Inconclusive; more consecutive errors than consecutiveErrorLimit
// → Error; count reached → Successful (no interval and no count: one measurement;
// interval without count: until the run is stopped).
func AssessMetric(spec *model.Metric, mr *MetricRun) MeasurementPhase {
	if mr.Phase.completed() {
		return mr.Phase
	}
	if spec.FailureLimit >= 0 && mr.Failed > spec.FailureLimit {
		return MeasurementFailed
	}
	if mr.Inconclusive > spec.InconclusiveLimit {
		return MeasurementInconclusive
	}
	if spec.ConsecutiveErrorLimit >= 0 && mr.ConsecutiveError > spec.ConsecutiveErrorLimit {
		return MeasurementError
	}
	if n := effectiveCount(spec); n > 0 && mr.Count >= n {
		return MeasurementSuccessful
	}
	if len(mr.Measurements) == 0 {
		return MeasurementPending
	}
	return MeasurementRunning
}

func effectiveCount(spec *model.Metric) int {
	if spec.Count > 0 {
		return spec.Count
	}
	if spec.Interval <= 0 {
		return 1
	}
	return 0
}

// assessRun decides the run once a non-dry-run metric is Failed, Error or Inconclusive
// (it stops at once, as Argo's run terminates), or every metric is Successful.
func (m *machine) assessRun(r *Run, specs []model.Metric) {
	worst := MeasurementSuccessful
	msg := ""
	all := true
	for _, mr := range r.Metrics {
		spec := metricSpec(specs, mr.Name)
		if spec != nil && spec.DryRun {
			continue
		}
		switch mr.Phase {
		case MeasurementFailed, MeasurementError:
			if worst != MeasurementFailed {
				worst, msg = mr.Phase, mr.Name+": "+mr.Message
			}
		case MeasurementInconclusive:
			if worst == MeasurementSuccessful {
				worst, msg = mr.Phase, mr.Name+": "+mr.Message
			}
		case MeasurementSuccessful:
		default:
			all = false
		}
	}
	if worst != MeasurementSuccessful {
		m.finishRun(r, worst, msg)
		return
	}
	if all {
		m.finishRun(r, MeasurementSuccessful, "all metrics successful")
	}
}

func (m *machine) finishRun(r *Run, phase MeasurementPhase, msg string) {
	r.Phase, r.Message, r.Done = phase, msg, true
	for j := range r.Metrics {
		r.Metrics[j].InFlight = false
	}
}

// schedule asks for the measurements that are due.
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
			m.actions = append(m.actions, &MeasureAction{Run: r.ID, Kind: r.Kind, Metric: *spec})
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
