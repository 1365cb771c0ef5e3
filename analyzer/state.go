package analyzer

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/sluice-mesh/sluice/model"
)

// SchemaVersion is the version of State's JSON form that this build writes. A file
// without a version (written before versioning, schema 0) still loads: MigrateState
// fills what it lacks. A file from a newer build is refused rather than misread.
//
// Schema 2: History holds the current release only (earlier releases, with their own
// history and analysis runs, are in Releases); HealthWaitSince, SwitchRequested and
// FullPromotion are new.
const SchemaVersion = 2

// State is the persisted state of one rollout: everything the pure machine (Step) needs
// to continue after a restart. It is plain data and round-trips through JSON; floats
// that JSON cannot hold (NaN, ±Inf) are written as the strings "NaN", "+Inf", "-Inf".
type State struct {
	// Schema is the SchemaVersion the state was written with (0: before versioning).
	Schema   int    `json:"schemaVersion"`
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
	// AbortCauseAt is when the measurement that caused the abort finished (a data-plane
	// error: when it was reported; an operator's abort: when the command arrived).
	// AbortLatency is the time from it to the zero weight applied.
	AbortCauseAt *time.Time `json:"abortCauseAt,omitempty"`
	// AbortCause says what aborted: analysis, operator or dataPlane.
	AbortCause   string   `json:"abortCause,omitempty"`
	AbortLatency *float64 `json:"abortLatencySeconds,omitempty"`

	// Blue/green: Switched is true once the preview serves 100%; ReadyAt is when the
	// pre-promotion gate passed (auto promotion counts from it). SwitchRequested: an
	// operator promoted before the switch (it waits only for a healthy preview).
	Switched        bool       `json:"switched,omitempty"`
	SwitchedAt      *time.Time `json:"switchedAt,omitempty"`
	ReadyAt         *time.Time `json:"readyAt,omitempty"`
	SwitchRequested bool       `json:"switchRequested,omitempty"`
	// FullPromotion: promote --full skipped every remaining step (blue/green: the
	// analyses and delays); the raise to 100% still waits for a healthy canary.
	FullPromotion bool `json:"fullPromotion,omitempty"`

	// HealthWaitSince is when the current step began waiting for a healthy canary
	// endpoint (health.go); the rollout aborts once it has waited the progress deadline.
	// Kept across restarts, so a restart does not extend the deadline.
	HealthWaitSince *time.Time `json:"healthWaitSince,omitempty"`

	Runs    []Run `json:"runs,omitempty"`
	NextRun int   `json:"nextRun"`
	// History is the weight over time of the current release (at most maxHistory
	// points, thinned but spanning the whole release).
	History []WeightPoint `json:"history,omitempty"`
	// Releases are the earlier releases of this rollout, oldest first (at most
	// maxReleases), each with its outcome, its weight history and its analysis runs.
	Releases []Release `json:"releases,omitempty"`

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

// MetricRun is the progress of one metric within a run (Argo's MetricResult).
type MetricRun struct {
	Name               string           `json:"name"`
	Phase              MeasurementPhase `json:"phase"`
	Count              int              `json:"count"` // counted measurements (not errors)
	Successful         int              `json:"successful"`
	Failed             int              `json:"failed"`
	Inconclusive       int              `json:"inconclusive"`
	Error              int              `json:"error"`
	ConsecutiveError   int              `json:"consecutiveError"`
	ConsecutiveSuccess int              `json:"consecutiveSuccess"`
	LowTraffic         int              `json:"lowTraffic"`
	Message            string           `json:"message"`
	// NextAt is when the next measurement is due.
	NextAt time.Time `json:"nextAt"`
	// InFlight: a measurement was requested and has not come back yet.
	InFlight bool `json:"inFlight,omitempty"`
	// ProviderState is the provider's own state for this metric of this run (a judge
	// session's evidence), opaque to the machine: saved after each measurement and
	// handed back to the provider after a restart.
	ProviderState json.RawMessage `json:"providerState,omitempty"`
	Measurements  []Measurement   `json:"measurements,omitempty"`
}

// maxMeasurements bounds the measurements kept per metric (Argo's
// DefaultMeasurementHistoryLimit).
const maxMeasurements = 10

// maxValues bounds the numbers kept per measurement (a vector of many series).
const maxValues = 64

// completed reports whether p is a final phase.
func (p MeasurementPhase) completed() bool {
	switch p {
	case MeasurementSuccessful, MeasurementFailed, MeasurementInconclusive, MeasurementError, MeasurementTerminated:
		return true
	}
	return false
}

// MigrateState brings a state read from disk to SchemaVersion. Schema 0 (no
// schemaVersion field) lacks consecutiveSuccess counters and provider state; both start
// at their zero values, which is what they meant then. Schemas 0 and 1 kept the weight
// history of earlier releases in History: the points before the current release started
// go (the weight in effect then becomes the release's first point); the new fields of
// schema 2 start at their zero values (no release history, no health wait).
func MigrateState(st *State) error {
	switch {
	case st.Schema > SchemaVersion:
		return fmt.Errorf("rollout state of %q has schema %d; this Sluice reads up to %d (written by a newer Sluice?)", st.Rollout, st.Schema, SchemaVersion)
	case st.Schema < 0:
		return fmt.Errorf("rollout state of %q has schema %d", st.Rollout, st.Schema)
	}
	if st.Schema < 2 && !st.StartedAt.IsZero() {
		st.History = historySince(st.History, st.StartedAt)
	}
	st.Schema = SchemaVersion
	return nil
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
	c.Releases = append([]Release(nil), s.Releases...)
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
