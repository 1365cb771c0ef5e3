package analyzer

import (
	"fmt"
	"strings"
	"time"
)

// Never shift traffic to a dead canary (Argo waits for the canary's pods to be available
// before it sets a weight): a step that raises the canary's weight — a setWeight above
// the current one, the final 100%, blue/green's switch — waits until the canary cluster
// has at least one healthy endpoint in every data plane that carries it. The data planes'
// views arrive as an input (Inputs.Health), so Step stays pure. A step that waits longer
// than the rollout's progress deadline (Argo's progressDeadlineSeconds) aborts the
// rollout.

// DefaultProgressDeadline is how long a step waits for a healthy canary endpoint when
// the rollout does not say (Argo's default progressDeadlineSeconds, 600).
const DefaultProgressDeadline = 10 * time.Minute

// HealthReporter is a data plane's view of the clusters it serves (the router: its
// health checks and ejections; the xDS server: the endpoints it serves). It must answer
// at once, without I/O: the controller asks on every tick.
type HealthReporter interface {
	// ClusterHealth returns how many of cluster's endpoints are up (healthy: what a step
	// that raises the canary's weight waits for), how many are ejected now by passive
	// outlier detection (shown, and a health change, but an ejection reacts to errors,
	// which the analysis judges) and how many the data plane has (total). known is false
	// when the data plane does not carry the cluster.
	ClusterHealth(cluster string) (healthy, ejected, total int, known bool)
}

// HealthSource is one data plane's HealthReporter and its name in status, events and
// metrics ("router", "xds").
type HealthSource struct {
	Plane    string
	Reporter HealthReporter
}

// PlaneHealth is one data plane's view of one cluster's endpoints (HealthReporter).
type PlaneHealth struct {
	Plane   string `json:"plane"`
	Healthy int    `json:"healthy"`
	Ejected int    `json:"ejected"`
	Total   int    `json:"total"`
}

// String is "1/2 (router)", or "1/2 (router, 1 ejected)".
func (p PlaneHealth) String() string {
	if p.Ejected > 0 {
		return fmt.Sprintf("%d/%d (%s, %d ejected)", p.Healthy, p.Total, p.Plane, p.Ejected)
	}
	return fmt.Sprintf("%d/%d (%s)", p.Healthy, p.Total, p.Plane)
}

// ClusterHealth is the health of one cluster in every data plane that carries it
// (Inputs.Health, by cluster name).
type ClusterHealth []PlaneHealth

// String is "1/2 (router), 2/2 (xds)".
func (h ClusterHealth) String() string {
	parts := make([]string, 0, len(h))
	for _, p := range h {
		parts = append(parts, p.String())
	}
	return strings.Join(parts, ", ")
}

// WaitingForHealthPrefix starts the message of a step waiting for healthy canary
// endpoints: "waiting for healthy canary endpoints: 0/1 (router)".
const WaitingForHealthPrefix = "waiting for healthy canary endpoints: "

// progressDeadline is the rollout's wait limit for a healthy canary.
func (m *machine) progressDeadline() time.Duration {
	if d := m.r.ProgressDeadline; d > 0 {
		return d
	}
	return DefaultProgressDeadline
}

// canaryHealthy is the gate before a step raises the canary's weight. It passes when
// every data plane that carries the canary cluster has a healthy endpoint of it (no data
// plane reporting on it: nothing to wait for). Otherwise the step waits — phase
// Progressing, message "waiting for healthy canary endpoints: 0/1 (router)", a
// waitingForHealth event when the wait begins — and once it has waited the progress
// deadline, the rollout aborts with that reason.
func (m *machine) canaryHealthy() bool {
	st := &m.st
	var short ClusterHealth
	for _, p := range m.health[st.Canary] {
		if p.Healthy < 1 {
			short = append(short, p)
		}
	}
	if len(short) == 0 {
		st.HealthWaitSince = nil
		return true
	}
	msg := WaitingForHealthPrefix + short.String()
	deadline := m.progressDeadline()
	if st.HealthWaitSince == nil {
		t := m.now
		st.HealthWaitSince = &t
		m.event(EventWaitingForHealth, fmt.Sprintf("%s: %s; the rollout aborts if none is healthy within %s (progressDeadlineSeconds)",
			st.Canary, msg, deadline))
	}
	if waited := m.now.Sub(*st.HealthWaitSince); waited >= deadline {
		at := m.now
		m.abort(AbortByProgressDeadline, &at, fmt.Sprintf("progressDeadlineSeconds (%d) exceeded: canary %s had no healthy endpoint for %s; %s",
			int(deadline.Seconds()), st.Canary, waited.Round(time.Second), msg))
		return false
	}
	st.Phase = PhaseProgressing
	st.Message = msg
	return false
}
