package analyzer

import (
	"time"

	"github.com/sluice-mesh/sluice/model"
)

// State is the persisted state of one rollout: everything the pure machine (Step) needs
// to continue after a restart. It is plain data and round-trips through JSON.
type State struct {
	Rollout  string `json:"rollout"`
	Revision string `json:"revision"`
	// Stable and Canary are the effective roles of this release. They start as the
	// spec's stable/canary (blue/green: active/preview) services and swap when a new
	// release starts after a full promotion (see doc.go).
	Stable string `json:"stable"`
	Canary string `json:"canary"`

	Phase   Phase  `json:"phase"`
	Message string `json:"message"`
	// Step is the index of the current step; len(steps) once every step is done.
	Step int `json:"step"`
	// PauseUntil is the deadline of a running timed pause (kept across restarts).
	PauseUntil *time.Time `json:"pauseUntil,omitempty"`
	// Paused is an indefinite pause: pause: {}, an inconclusive analysis, or blue/green
	// waiting for a manual promotion. Only Promote (or Abort) ends it.
	Paused bool `json:"paused"`

	// SetWeight is the canary weight the rollout wants; ActualWeight is the last one
	// every data plane has applied.
	SetWeight    int `json:"setWeight"`
	ActualWeight int `json:"actualWeight"`
	// HeaderRoutes and Mirrors are the managed routes currently wanted (to Canary).
	HeaderRoutes []model.HeaderRoute `json:"headerRoutes,omitempty"`
	Mirrors      []model.Mirror      `json:"mirrors,omitempty"`
	// Gen increases with every change of the wanted routing; AppliedGen is the last Gen
	// every data plane applied. A step that changed routing waits until they are equal.
	Gen        uint64 `json:"gen"`
	AppliedGen uint64 `json:"appliedGen"`

	Aborted bool `json:"aborted"`
	// Completed: every step done (or promoted --full) and the canary serves 100%.
	Completed bool `json:"completed"`
	// AbortCauseAt is when the measurement (or command, or data-plane error) that caused
	// the abort finished; AbortLatency is the time from it to the zero weight applied.
	AbortCauseAt *time.Time `json:"abortCauseAt,omitempty"`
	AbortLatency *float64   `json:"abortLatencySeconds,omitempty"`

	// Blue/green: Switched is true once the preview serves 100%; ReadyAt is when the
	// pre-promotion gate passed (auto promotion counts from it).
	Switched   bool       `json:"switched,omitempty"`
	SwitchedAt *time.Time `json:"switchedAt,omitempty"`
	ReadyAt    *time.Time `json:"readyAt,omitempty"`

	Runs    []Run         `json:"runs,omitempty"`
	NextRun int           `json:"nextRun"`
	History []WeightPoint `json:"history,omitempty"`

	StartedAt time.Time `json:"startedAt"`
	UpdatedAt time.Time `json:"updatedAt"`
}

// Run kinds.
const (
	KindInline        = "inline"
	KindBackground    = "background"
	KindPrePromotion  = "prePromotion"
	KindPostPromotion = "postPromotion"
)

// Run is one analysis run: its metrics and their measurements.
type Run struct {
	ID        int              `json:"id"`
	Name      string           `json:"name"`
	Kind      string           `json:"kind"`
	Step      int              `json:"step"`
	Phase     MeasurementPhase `json:"phase"`
	Message   string           `json:"message"`
	StartedAt time.Time        `json:"startedAt"`
	// Done: the run no longer measures (decided, or terminated by the rollout).
	Done bool `json:"done"`
	// Acknowledged: an operator promoted past this run's inconclusive result.
	Acknowledged bool        `json:"acknowledged,omitempty"`
	Metrics      []MetricRun `json:"metrics"`
}

// MetricRun is the progress of one metric within a run.
type MetricRun struct {
	Name             string           `json:"name"`
	Phase            MeasurementPhase `json:"phase"`
	Count            int              `json:"count"` // counted measurements (not errors)
	Successful       int              `json:"successful"`
	Failed           int              `json:"failed"`
	Inconclusive     int              `json:"inconclusive"`
	Error            int              `json:"error"`
	ConsecutiveError int              `json:"consecutiveError"`
	LowTraffic       int              `json:"lowTraffic"`
	Message          string           `json:"message"`
	// NextAt is when the next measurement is due.
	NextAt time.Time `json:"nextAt"`
	// InFlight: a measurement was requested and has not come back yet.
	InFlight     bool          `json:"inFlight,omitempty"`
	Measurements []Measurement `json:"measurements,omitempty"`
}

// maxMeasurements bounds the measurements kept per metric.
const maxMeasurements = 10

// completed reports whether p is a final phase.
func (p MeasurementPhase) completed() bool {
	switch p {
	case MeasurementSuccessful, MeasurementFailed, MeasurementInconclusive, MeasurementError:
		return true
	}
	return false
}

func (s *State) run(id int) *Run {
	for i := range s.Runs {
		if s.Runs[i].ID == id {
			return &s.Runs[i]
		}
	}
	return nil
}

func (s *State) clone() State {
	c := *s
	c.HeaderRoutes = append([]model.HeaderRoute(nil), s.HeaderRoutes...)
	c.Mirrors = append([]model.Mirror(nil), s.Mirrors...)
	c.History = append([]WeightPoint(nil), s.History...)
	c.Runs = make([]Run, len(s.Runs))
	for i, r := range s.Runs {
		r.Metrics = append([]MetricRun(nil), r.Metrics...)
		for j := range r.Metrics {
			r.Metrics[j].Measurements = append([]Measurement(nil), r.Metrics[j].Measurements...)
		}
		c.Runs[i] = r
	}
	return c
}
