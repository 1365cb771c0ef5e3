package analyzer

import (
	"errors"
	"fmt"

	"github.com/sluice-mesh/sluice/model"
)

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

func (m *machine) command(c CommandKind) {
	if CheckCommand(&m.st, c) != nil {
		return
	}
	switch c {
	case CmdAbort:
		now := m.now
		m.abort(AbortByOperator, &now, "aborted by operator")
	case CmdPromoteFull:
		// Every remaining step (blue/green: the analyses and delays) is skipped; the
		// raise to 100% still waits for a healthy canary (advance).
		m.st.Paused, m.st.PauseUntil = false, nil
		m.terminateRuns("promoted --full by operator")
		m.st.FullPromotion = true
		m.st.Message = "promoted --full by operator"
		if m.r.Canary != nil {
			m.st.Step = len(m.r.Canary.Steps)
		}
		m.event(EventResumed, "promoted --full by operator")
	case CmdPromote:
		m.promote()
	case CmdRetry:
		prev := m.st
		m.st = State{
			Schema: SchemaVersion, Rollout: m.r.Name, Revision: m.r.Revision, Stable: prev.Stable, Canary: prev.Canary,
			Phase: PhaseProgressing, StartedAt: m.now, Gen: prev.Gen, AppliedGen: prev.AppliedGen,
			ActualWeight: prev.ActualWeight, SetWeight: prev.SetWeight, NextRun: prev.NextRun,
			History:  []WeightPoint{{Time: m.now, SetWeight: prev.SetWeight, ActualWeight: max(prev.ActualWeight, 0)}},
			Releases: archive(&prev, m.now),
		}
		m.event(EventStarted, "retried from step 0")
	case CmdStart:
		prev := m.st
		m.st = NewState(m.r, &prev, m.now)
		m.event(EventStarted, fmt.Sprintf("release %s started: stable %s, canary %s", m.st.Revision, m.st.Stable, m.st.Canary))
	}
}

// promote ends the current pause, or skips the current pause or analysis step (Argo's
// `kubectl argo rollouts promote`: an inconclusive step analysis moves to the next step,
// an inconclusive background analysis starts a new run).
func (m *machine) promote() {
	wasPaused := m.st.Paused || m.st.PauseUntil != nil
	m.st.Paused, m.st.PauseUntil = false, nil
	if m.r.Strategy == model.StrategyBlueGreen {
		if !m.st.Switched {
			for i := range m.st.Runs {
				if r := &m.st.Runs[i]; r.Kind == KindPrePromotion && !r.Done {
					m.endRun(r, MeasurementSuccessful, "skipped by promote")
				}
			}
			// The switch itself still waits for a healthy preview (beforeSwitch).
			m.st.SwitchRequested = true
			m.st.Phase = PhaseProgressing
			m.st.Message = "promoted by operator: switching"
			m.event(EventResumed, "promoted by operator")
			return
		}
		// After the switch: an inconclusive post-promotion analysis is accepted.
		for i := range m.st.Runs {
			if r := &m.st.Runs[i]; r.Kind == KindPostPromotion && r.Phase == MeasurementInconclusive {
				r.Acknowledged = true
			}
		}
		m.st.Phase = PhaseProgressing
		m.event(EventResumed, "promoted by operator")
		return
	}
	// An inconclusive background analysis is acknowledged; a new one starts.
	for i := range m.st.Runs {
		if r := &m.st.Runs[i]; r.Kind == KindBackground && r.Phase == MeasurementInconclusive {
			r.Acknowledged = true
		}
	}
	steps := m.r.Canary.Steps
	if m.st.Step < len(steps) {
		s := steps[m.st.Step]
		if s.Pause != nil || s.Analysis != nil || wasPaused {
			for i := range m.st.Runs {
				if r := &m.st.Runs[i]; r.Kind == KindInline && r.Step == m.st.Step && !r.Done {
					m.endRun(r, MeasurementSuccessful, "skipped by promote")
				}
			}
			m.stepDone("promoted by operator")
		}
	}
	m.st.Phase = PhaseProgressing
	m.event(EventResumed, "promoted by operator")
}
