package judge

import (
	"fmt"
	"time"
)

// stateVersion is SessionState.Version for this layout; Restore refuses other versions.
const stateVersion = 1

// SessionState is everything a Session's decisions depend on besides its Config: the
// counters last seen, the open block, the totals, the tests' wealth and dispersion, the
// burn-in and start time, and the final result once there is one. It encodes as JSON
// and back without loss, so a controller can store it with the rollout and continue the
// session after a restart with Restore: the restored session takes the same decision at
// the same update as one that never stopped.
type SessionState struct {
	// Version of the layout (Restore refuses others).
	Version int `json:"version"`
	// Signal the state belongs to (Restore refuses a different one).
	Signal Signal `json:"signal"`
	// Start is when the session started; BurnIn and MaxDuration count from it.
	Start time.Time `json:"start"`
	// Started: the burn-in is over.
	Started bool `json:"started"`
	// PrevBaseline and PrevCanary are the cumulative counters of the last update.
	PrevBaseline ClusterStats `json:"prevBaseline"`
	PrevCanary   ClusterStats `json:"prevCanary"`
	// BlockStart, BlockBaseline and BlockCanary are the open block: since when, and the
	// increments it holds.
	BlockStart    time.Time    `json:"blockStart"`
	BlockBaseline ClusterStats `json:"blockBaseline"`
	BlockCanary   ClusterStats `json:"blockCanary"`
	// Blocks counts the closed blocks; Baseline and Canary are their totals.
	Blocks   int          `json:"blocks"`
	Baseline ClusterStats `json:"baseline"`
	Canary   ClusterStats `json:"canary"`
	// OwnErrors and OwnRequests: the baseline's errors and requests in the blocks
	// without a burst (errors only; the tolerance's scale, see ownRate).
	OwnErrors   float64 `json:"ownErrors,omitempty"`
	OwnRequests float64 `json:"ownRequests,omitempty"`
	// LatencyBaselineTail is the baseline's exceedance at the last fail-side threshold
	// (latency only; the bounds' scale).
	LatencyBaselineTail float64 `json:"latencyBaselineTail,omitempty"`
	// Fail and Pass are the two sides of the comparison; FloorFail and FloorPass the
	// error-rate floor's (errors with an absolute tolerance only).
	Fail      *TestState `json:"fail"`
	Pass      *TestState `json:"pass"`
	FloorFail *TestState `json:"floorFail,omitempty"`
	FloorPass *TestState `json:"floorPass,omitempty"`
	// Resets counts intervals dropped because a counter went backwards.
	Resets int `json:"resets,omitempty"`
	// Note is the last remark for the message.
	Note string `json:"note,omitempty"`
	// Final is the decision once final.
	Final *Result `json:"final,omitempty"`
}

// State returns a deep copy of the session's state.
func (s *Session) State() SessionState { return s.st.clone() }

// Restore continues a session from a state State returned (possibly encoded to JSON and
// back) under cfg. It fails when the state is of another layout version or signal, or
// incomplete.
func Restore(cfg Config, st SessionState) (*Session, error) {
	cfg = cfg.withDefaults()
	if st.Version != stateVersion {
		return nil, fmt.Errorf("judge: session state version %d, want %d", st.Version, stateVersion)
	}
	if st.Signal != cfg.Signal {
		return nil, fmt.Errorf("judge: session state for signal %q, configuration says %q", st.Signal, cfg.Signal)
	}
	if !st.Fail.valid() || !st.Pass.valid() || (st.FloorFail != nil) != (st.FloorPass != nil) ||
		(st.FloorFail != nil && (!st.FloorFail.valid() || !st.FloorPass.valid())) {
		return nil, fmt.Errorf("judge: session state incomplete")
	}
	return &Session{cfg: cfg, st: st.clone()}, nil
}

// valid reports whether a test state has the layout this version uses.
func (t *TestState) valid() bool {
	return t != nil && len(t.LogW) == len(betSizes) && len(t.LamH) == len(betSizes) && len(t.Scales) == len(dispersionScales)
}

func (st SessionState) clone() SessionState {
	c := st
	c.PrevBaseline, c.PrevCanary = st.PrevBaseline.clone(), st.PrevCanary.clone()
	c.BlockBaseline, c.BlockCanary = st.BlockBaseline.clone(), st.BlockCanary.clone()
	c.Baseline, c.Canary = st.Baseline.clone(), st.Canary.clone()
	c.Fail, c.Pass = st.Fail.clone(), st.Pass.clone()
	c.FloorFail, c.FloorPass = st.FloorFail.clone(), st.FloorPass.clone()
	if st.Final != nil {
		r := *st.Final
		r.Details = make(map[string]float64, len(st.Final.Details))
		for k, v := range st.Final.Details {
			r.Details[k] = v
		}
		c.Final = &r
	}
	return c
}
