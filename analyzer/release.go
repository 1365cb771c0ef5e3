package analyzer

import "time"

// Earlier releases of a rollout stay in its State (Releases), each with its outcome and
// reason, its weight history and its analysis runs, so that status can show why release 1
// was aborted while release 2 runs.

// maxReleases bounds State.Releases: the most recent earlier releases are kept.
const maxReleases = 10

// maxHistory bounds the weight points kept per release (thinHistory).
const maxHistory = 200

// Release outcomes.
const (
	// OutcomePromoted: the canary served 100% when the release ended.
	OutcomePromoted = "promoted"
	// OutcomeAborted: the release was aborted (then retried or replaced).
	OutcomeAborted = "aborted"
	// OutcomeSuperseded: a new revision, or Start, replaced a release still in progress.
	OutcomeSuperseded = "superseded"
)

// Release is an earlier release of a rollout: what it was, how it ended and what it
// measured.
type Release struct {
	Revision string `json:"revision"`
	Stable   string `json:"stable"`
	Canary   string `json:"canary"`
	// Outcome is promoted, aborted or superseded; Reason the release's last message.
	Outcome    string `json:"outcome"`
	Reason     string `json:"reason"`
	AbortCause string `json:"abortCause,omitempty"`
	// Step is the step the release had reached; Weight its last applied canary weight.
	Step      int       `json:"step"`
	Weight    int       `json:"weight"`
	StartedAt time.Time `json:"startedAt"`
	EndedAt   time.Time `json:"endedAt"`
	// History is the release's weight over time, from StartedAt to EndedAt.
	History []WeightPoint `json:"history,omitempty"`
	// Runs are the release's analysis runs, every one ended.
	Runs []Run `json:"runs,omitempty"`
}

// archive returns prev's earlier releases with prev itself appended (ending at now),
// the oldest dropped beyond maxReleases.
func archive(prev *State, now time.Time) []Release {
	rel := Release{
		Revision: prev.Revision, Stable: prev.Stable, Canary: prev.Canary, Reason: prev.Message,
		AbortCause: prev.AbortCause, Step: prev.Step, Weight: max(prev.ActualWeight, 0),
		StartedAt: prev.StartedAt, EndedAt: now,
		History: append([]WeightPoint(nil), prev.History...),
	}
	switch {
	case prev.Aborted:
		rel.Outcome = OutcomeAborted
	case prev.Completed:
		rel.Outcome = OutcomePromoted
	default:
		rel.Outcome = OutcomeSuperseded
	}
	if n := len(rel.History); n > 0 && rel.History[n-1].Time.Before(now) {
		// The weight held until the release ended: the chart reaches its end.
		last := rel.History[n-1]
		last.Time = now
		rel.History = append(rel.History, last)
	}
	for _, r := range prev.Runs {
		r.Metrics = append([]MetricRun(nil), r.Metrics...)
		if !r.Done {
			r.Done, r.Phase, r.Message = true, MeasurementTerminated, "run ended with its release"
		}
		for j := range r.Metrics {
			mr := &r.Metrics[j]
			mr.InFlight, mr.ProviderState = false, nil
			if !mr.Phase.completed() {
				mr.Phase, mr.Message = MeasurementTerminated, "release ended before this metric completed"
			}
			// Charts read the first value; the full vectors of old releases are not kept.
			ms := make([]Measurement, len(mr.Measurements))
			for k, m := range mr.Measurements {
				if len(m.Values) > 1 {
					m.Values = m.Values[:1:1]
				}
				ms[k] = m
			}
			mr.Measurements = ms
		}
		rel.Runs = append(rel.Runs, r)
	}
	out := append(append([]Release(nil), prev.Releases...), rel)
	if len(out) > maxReleases {
		out = out[len(out)-maxReleases:]
	}
	return out
}

// thinHistory bounds h to maxHistory points without losing its span: when it is over,
// every second point between the first and the last is dropped.
func thinHistory(h []WeightPoint) []WeightPoint {
	if len(h) <= maxHistory {
		return h
	}
	out := make([]WeightPoint, 0, len(h)/2+2)
	out = append(out, h[0])
	for i := 2; i < len(h)-1; i += 2 {
		out = append(out, h[i])
	}
	return append(out, h[len(h)-1])
}

// historySince keeps the points of h from start on; the weight in effect at start (the
// last earlier point) becomes a point at start.
func historySince(h []WeightPoint, start time.Time) []WeightPoint {
	var out []WeightPoint
	for i, p := range h {
		if !p.Time.Before(start) {
			if i > 0 && h[i-1].Time.Before(start) && p.Time.After(start) {
				carried := h[i-1]
				carried.Time = start
				out = append(out, carried)
			}
			out = append(out, h[i:]...)
			return out
		}
	}
	if len(h) > 0 {
		carried := h[len(h)-1]
		carried.Time = start
		return []WeightPoint{carried}
	}
	return nil
}
