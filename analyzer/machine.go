package analyzer

import (
	"time"

	"github.com/sluice-mesh/sluice/model"
)

// This file is the core of the pure machine: its inputs, its actions, Step, and the
// routing and outcome helpers every strategy shares. The strategies are in canary.go and
// bluegreen.go (Argo's rollout/canary.go, rollout/bluegreen.go), analysis runs in
// analysis.go (Argo's analysis/analysis.go), operator commands in commands.go.

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

// Inputs is everything that happened since the last Step.
type Inputs struct {
	Results  []Result
	Applied  []Applied
	Commands []CommandKind
	// Health is the data planes' current view of the clusters, by cluster name (only
	// the planes that carry each). A step that raises the canary's weight waits for a
	// healthy canary endpoint in each (health.go); nil: no data plane reports health,
	// nothing to wait for.
	Health map[string]ClusterHealth
}

// Action is something the Controller must do after a Step: *MeasureAction,
// *TerminateAction or *Event.
type Action interface{ isAction() }

// MeasureAction asks for one measurement of a metric; its Result goes back into Step.
type MeasureAction struct {
	Run    int
	Kind   string
	Metric model.Metric
	// ProviderState is the metric's saved provider state (MetricRun.ProviderState), for a
	// provider that resumes a session (the judge) after a restart.
	ProviderState []byte
}

// TerminateAction tells the providers that run Run has ended (Argo's runMeasurements
// terminates in-flight measurements through the provider): whatever they keep for its
// metrics (judge sessions) can go.
type TerminateAction struct {
	Run     int
	Metrics []string
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
	// EventWaitingForHealth: a step that raises the canary's weight began waiting for a
	// healthy canary endpoint.
	EventWaitingForHealth = "waitingForHealth"
	// EventHealthChanged: the number of healthy (or all) endpoints of one of the
	// rollout's clusters changed in a data plane (an ejection, a failed health check, a
	// recovery). The controller emits it; the machine never does.
	EventHealthChanged = "healthChanged"
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

func (*MeasureAction) isAction()   {}
func (*TerminateAction) isAction() {}
func (*Event) isAction()           {}

// Abort causes (State.AbortCause).
const (
	AbortByAnalysis  = "analysis"
	AbortByOperator  = "operator"
	AbortByDataPlane = "dataPlane"
	// AbortByProgressDeadline: a step waited longer than the progress deadline for a
	// healthy canary endpoint.
	AbortByProgressDeadline = "progressDeadline"
)

// NewState returns the state of a fresh release of r, starting at step 0 with weight 0.
// prev, when non-nil, is the state of the previous release: if it completed (the canary
// serves 100%), the roles swap so that the cluster serving traffic becomes the stable.
func NewState(r *model.Rollout, prev *State, now time.Time) State {
	stable, canary := services(r)
	if prev != nil && prev.Completed && !prev.Aborted && prev.Canary != "" {
		stable, canary = prev.Canary, prev.Stable
	}
	st := State{
		Schema: SchemaVersion, Rollout: r.Name, Revision: r.Revision, Stable: stable, Canary: canary,
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
		st.Releases = archive(prev, now)
	}
	st.History = []WeightPoint{{Time: now, ActualWeight: max(st.ActualWeight, 0)}}
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

// machine is one Step call's working set.
type machine struct {
	r       *model.Rollout
	st      State
	now     time.Time
	health  map[string]ClusterHealth
	actions []Action
}

// Step advances rollout r from state st at time now with the given inputs, and returns
// the new state and what to do. It is pure: no I/O, no clock, no randomness. The caller
// persists the new state before acting on it, and applies the routing (Gen) it wants.
func Step(r *model.Rollout, st State, now time.Time, in Inputs) (State, []Action) {
	m := &machine{r: r, st: st.clone(), now: now, health: in.Health}
	for _, a := range in.Applied {
		m.applied(a)
	}
	for _, res := range in.Results {
		m.record(res)
	}
	m.assessRuns()
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
	if m.r.Strategy == model.StrategyBlueGreen {
		return m.advanceBlueGreen()
	}
	return m.advanceCanary()
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
	m.st.History = thinHistory(append(h, WeightPoint{Time: m.now, SetWeight: m.st.SetWeight, ActualWeight: aw}))
}

// routingSettled reports whether the data planes serve what the state wants.
func (m *machine) routingSettled() bool { return m.st.AppliedGen == m.st.Gen }

func (m *machine) setRouting(weight int, hr []model.HeaderRoute, mirrors []model.Mirror) {
	m.st.SetWeight = weight
	m.st.HeaderRoutes = hr
	m.st.Mirrors = mirrors
	m.st.Gen++
}

// wantsRouting reports whether the wanted routing differs from weight w with no header
// routes and no mirrors.
func (m *machine) wantsRouting(w int) bool {
	return m.st.SetWeight != w || len(m.st.HeaderRoutes) > 0 || len(m.st.Mirrors) > 0
}

func (m *machine) applied(a Applied) {
	if a.Gen != m.st.Gen {
		return // stale: a newer routing is wanted already
	}
	if a.Err != nil {
		if m.st.Aborted {
			// Nothing safer to fall back to: keep wanting weight 0; the controller retries.
			m.st.Message = "abort not applied yet (retrying): " + a.Err.Error()
			return
		}
		m.abort(AbortByDataPlane, &a.At, "data plane refused the change: "+a.Err.Error())
		return
	}
	m.st.AppliedGen = a.Gen
	m.st.ActualWeight = a.Weight
	if m.st.Aborted && a.Weight == 0 && m.st.AbortCauseAt != nil && m.st.AbortLatency == nil {
		l := max(a.At.Sub(*m.st.AbortCauseAt).Seconds(), 0)
		m.st.AbortLatency = &l
	}
}

// abort sends every request back to the stable: weight 0, header and mirror routes
// removed, every analysis run ended. causeAt is when the failing measurement finished
// (nil for an operator's abort: there is nothing to time).
func (m *machine) abort(cause string, causeAt *time.Time, msg string) {
	if m.st.Aborted || m.st.Completed {
		return
	}
	m.st.Aborted = true
	m.st.Paused = false
	m.st.PauseUntil = nil
	m.st.Phase = PhaseDegraded
	m.st.Message = "aborted: " + msg
	m.st.AbortCause = cause
	m.st.AbortCauseAt = nil
	if causeAt != nil {
		t := *causeAt
		m.st.AbortCauseAt = &t
	}
	m.st.AbortLatency = nil
	m.st.HealthWaitSince = nil
	m.terminateRuns("rollout aborted")
	m.setRouting(0, nil, nil)
	m.event(EventAborted, msg)
}

// complete makes the canary the one serving 100%; Completed once applied.
func (m *machine) complete(msg string) {
	if m.r.Canary != nil {
		m.st.Step = len(m.r.Canary.Steps)
	}
	if m.wantsRouting(100) {
		m.setRouting(100, nil, nil)
	}
	m.st.Message = msg
	m.st.Phase = PhaseProgressing
}

// promoted ends the release: the canary serves 100% (applied), every run ends.
func (m *machine) promoted(msg string) {
	m.terminateRuns("rollout promoted")
	m.st.Completed = true
	m.st.Gen++ // the canary is no longer the internal-traffic target
	m.st.Phase = PhaseHealthy
	m.st.Message = msg
	m.event(EventPromoted, msg)
}

// pauseFor pauses indefinitely for a person, writing the message and the event once.
func (m *machine) pauseFor(msg string) {
	m.st.Phase = PhasePaused
	if m.st.Paused {
		return
	}
	m.st.Paused = true
	m.st.Message = msg
	m.event(EventPaused, msg)
}

// Outcomes of an analysis run that gates something (gate).
type gateOutcome int

const (
	gateRunning gateOutcome = iota // still measuring: wait
	gatePassed                     // Successful: go on
	gateStopped                    // Failed/Error (aborted) or Inconclusive (paused)
)

// gate applies a run's outcome, the one place where "failed → event + abort" and
// "inconclusive → pause" happen: Failed or Error emits analysisFailed and aborts with
// the run's message; Inconclusive pauses for a person (message and event once); what
// names the analysis and next says what promote does.
func (m *machine) gate(r *Run, what, next string) gateOutcome {
	switch r.Phase {
	case MeasurementSuccessful:
		return gatePassed
	case MeasurementFailed, MeasurementError:
		m.event(EventAnalysisFailed, what+": "+r.Message)
		at := m.lastFinished(r)
		m.abort(AbortByAnalysis, &at, what+" "+string(r.Phase)+": "+r.Message)
		return gateStopped
	case MeasurementInconclusive:
		m.pauseFor(what + " inconclusive: " + r.Message + "; promote to " + next + ", or abort")
		return gateStopped
	}
	return gateRunning
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
