package analyzer

import (
	"fmt"

	"github.com/sluice-mesh/sluice/model"
)

// The canary strategy (Argo's rollout/canary.go): walk the steps; the background
// analysis runs from its startingStep until the rollout completes.

func (m *machine) advanceCanary() bool {
	st := &m.st
	c := m.r.Canary
	if r := m.liveBackground(); r != nil && m.gate(r, "analysis "+r.Name, "continue") == gateStopped {
		return false
	}
	if st.Paused {
		st.Phase = PhasePaused
		return false
	}
	if !m.routingSettled() {
		st.Phase = PhaseProgressing
		return false
	}
	// Background analysis starts at its starting step (Argo: BeforeStartingStep).
	if c.Analysis != nil && st.Step >= c.Analysis.StartingStep && m.liveBackground() == nil {
		m.startRun(KindBackground, c.Analysis.StartingStep, &c.Analysis.AnalysisRef)
	}
	if st.Step >= len(c.Steps) {
		if m.wantsRouting(100) {
			if st.SetWeight < 100 && !m.canaryHealthy() {
				return false
			}
			if st.FullPromotion {
				m.complete("promoted --full by operator")
			} else {
				m.complete("all steps completed")
			}
			return true
		}
		m.promoted("promoted: " + st.Canary + " serves 100%")
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
			if w > st.SetWeight && !m.canaryHealthy() {
				return false
			}
			m.setRouting(w, st.HeaderRoutes, st.Mirrors)
			st.Message = fmt.Sprintf("setting weight %d", w)
			return false
		}
		m.stepDone(fmt.Sprintf("weight %d applied", w))
		return true
	case s.Pause != nil:
		return m.pauseStep(s.Pause)
	case s.Analysis != nil:
		r := m.findRun(KindInline, st.Step)
		if r == nil {
			m.startRun(KindInline, st.Step, s.Analysis)
			return true
		}
		switch m.gate(r, "analysis "+r.Name, "continue") {
		case gatePassed:
			m.stepDone("analysis " + r.Name + " successful")
			return true
		case gateRunning:
			st.Message = "analysis " + r.Name + " running"
		}
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

// pauseStep runs a pause step: {} waits for promote, a duration until it elapses (its
// deadline is kept across restarts).
func (m *machine) pauseStep(p *model.Pause) bool {
	st := &m.st
	if p.Duration == nil {
		m.pauseFor("paused: waiting for promote")
		return false
	}
	if st.PauseUntil == nil {
		until := m.now.Add(*p.Duration)
		st.PauseUntil = &until
		st.Message = "paused for " + p.Duration.String()
		m.event(EventPaused, st.Message)
	}
	if m.now.Before(*st.PauseUntil) {
		st.Phase = PhasePaused
		return false
	}
	st.PauseUntil = nil
	m.stepDone("pause ended")
	return true
}

func (m *machine) stepDone(msg string) {
	m.event(EventStepCompleted, msg)
	m.st.Step++
	m.st.HealthWaitSince = nil
}

// liveBackground is the current background run (not acknowledged by a promote), or nil.
func (m *machine) liveBackground() *Run {
	for i := range m.st.Runs {
		if r := &m.st.Runs[i]; r.Kind == KindBackground && !r.Acknowledged {
			return r
		}
	}
	return nil
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
