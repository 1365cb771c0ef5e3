package analyzer

import (
	"fmt"
	"time"

	"github.com/sluice-mesh/sluice/model"
)

// The blue/green strategy (Argo's rollout/bluegreen.go): the preview is reachable by its
// header route; prePromotionAnalysis gates the switch; the switch is one 0→100 change;
// postPromotionAnalysis can still abort back to the old active until it passed and
// scaleDownDelaySeconds elapsed.

// PreviewRouteName is the name of blue/green's preview header route.
const PreviewRouteName = "sluice-preview"

func (m *machine) advanceBlueGreen() bool {
	if !m.st.Switched {
		return m.beforeSwitch()
	}
	return m.afterSwitch()
}

func (m *machine) beforeSwitch() bool {
	st := &m.st
	bg := m.r.BlueGreen
	if len(bg.PreviewHeader) > 0 && !m.hasPreviewRoute() {
		m.setRouting(0, []model.HeaderRoute{{Name: PreviewRouteName, Headers: bg.PreviewHeader, Cluster: st.Canary}}, nil)
		return false
	}
	if st.SetWeight != 0 {
		m.setRouting(0, st.HeaderRoutes, nil)
		return false
	}
	if !m.routingSettled() {
		st.Phase = PhaseProgressing
		return false
	}
	why := "promoted by operator"
	switch {
	case st.FullPromotion:
		why = "promoted --full by operator"
	case !st.SwitchRequested:
		if !m.previewReady() {
			return false
		}
		why = "auto promotion"
	}
	// The switch sends every request to the preview: never to a dead one.
	if !m.canaryHealthy() {
		return false
	}
	m.switchOver(why)
	return true
}

// previewReady runs what gates an automatic switch: the pre-promotion analysis, then a
// manual promotion (autoPromotionEnabled false) or autoPromotionSeconds.
func (m *machine) previewReady() bool {
	st := &m.st
	bg := m.r.BlueGreen
	if bg.PrePromotionAnalysis != nil {
		r := m.findRun(KindPrePromotion, 0)
		if r == nil {
			m.startRun(KindPrePromotion, 0, bg.PrePromotionAnalysis)
			return false
		}
		switch m.gate(r, "pre-promotion analysis", "switch") {
		case gateStopped:
			return false
		case gateRunning:
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
		m.pauseFor("preview ready: waiting for promote")
		return false
	}
	if bg.AutoPromotionSeconds > 0 {
		until := st.ReadyAt.Add(time.Duration(bg.AutoPromotionSeconds) * time.Second)
		if m.now.Before(until) {
			st.PauseUntil = &until
			st.Phase = PhasePaused
			st.Message = fmt.Sprintf("preview ready: auto promotion after autoPromotionSeconds (%d)", bg.AutoPromotionSeconds)
			return false
		}
		st.PauseUntil = nil
	}
	return true
}

func (m *machine) afterSwitch() bool {
	st := &m.st
	bg := m.r.BlueGreen
	if !m.routingSettled() {
		return false
	}
	if st.SwitchedAt == nil {
		t := m.now
		st.SwitchedAt = &t
		m.stepDone("switched: " + st.Canary + " is active")
	}
	if st.FullPromotion {
		m.promoted("promoted --full: " + st.Canary + " is active")
		return false
	}
	if bg.PostPromotionAnalysis != nil {
		r := m.findRun(KindPostPromotion, 1)
		if r == nil {
			m.startRun(KindPostPromotion, 1, bg.PostPromotionAnalysis)
			return true
		}
		if !r.Acknowledged {
			switch m.gate(r, "post-promotion analysis", "complete") {
			case gateStopped:
				return false
			case gateRunning:
				st.Phase = PhaseProgressing
				st.Message = "post-promotion analysis running; abort switches back to " + st.Stable
				return false
			}
		}
	}
	if st.Paused {
		st.Phase = PhasePaused
		return false
	}
	if end := st.SwitchedAt.Add(time.Duration(bg.ScaleDownDelaySeconds) * time.Second); m.now.Before(end) {
		st.Phase = PhaseProgressing
		st.Message = fmt.Sprintf("switched; abort switches back to %s until scaleDownDelaySeconds (%d) have passed", st.Stable, bg.ScaleDownDelaySeconds)
		return false
	}
	m.promoted("promoted: " + st.Canary + " is active")
	return false
}

func (m *machine) hasPreviewRoute() bool {
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
	m.st.SwitchRequested = false
	m.st.Paused, m.st.PauseUntil = false, nil
	m.st.Phase = PhaseProgressing
	m.st.Message = "switching: " + msg
	m.setRouting(100, nil, nil)
}
