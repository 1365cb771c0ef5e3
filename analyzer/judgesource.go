package analyzer

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/api"
	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-mesh/sluice/analyzer/judge"
	"github.com/sluice-mesh/sluice/model"
)

// NewJudgeFactory returns the JudgeFactory that runs analyzer/judge over the router's
// own series gathered from router (in-process; nil: only judges with a
// prometheusAddress work), or over Envoy's cluster stats in the Prometheus server at the
// provider's prometheusAddress. Pass it as Options.Judge.
//
// A session starts at the metric's first measurement with the counters at that moment.
// What it saves (Save, kept in the rollout's State) is the judge's own session state —
// its blocks, evidence and burn-in origin — so a session restored after a restart
// continues the same test: the router's counters start again from zero in the new
// process, which the judge sees as a reset and skips for one interval.
func NewJudgeFactory(router prometheus.Gatherer) JudgeFactory {
	return func(m model.Metric, baseline, canary string, restore json.RawMessage) (JudgeSession, error) {
		p := m.Provider.Judge
		cfg := judge.ConfigFrom(p)
		if err := cfg.Validate(); err != nil {
			return nil, err
		}
		var src judge.Source
		switch {
		case p.PrometheusAddress != "":
			addr := p.PrometheusAddress
			if !strings.Contains(addr, "://") {
				addr = "http://" + addr
			}
			c, err := api.NewClient(api.Config{Address: addr})
			if err != nil {
				return nil, fmt.Errorf("judge: %w", err)
			}
			src = judge.PrometheusSource(v1.NewAPI(c))
		case router != nil:
			src = judge.GathererSource(router)
		default:
			return nil, fmt.Errorf("router metrics not available in this process")
		}
		js := &judgeSession{t: judge.NewTracker(cfg, src, baseline, canary)}
		if len(restore) > 0 {
			var prev judgeRecord
			if err := json.Unmarshal(restore, &prev); err == nil {
				js.rec.StartedAt, js.rec.Restarts = prev.StartedAt, prev.Restarts+1
				if prev.Session != nil {
					js.resumed = js.t.Restore(*prev.Session) == nil
				}
			}
			js.restarted = true
		}
		return js, nil
	}
}

// judgeRecord is what a judge session saves: when it started, how many times Sluice
// restarted under it, and the judge's session state (nil before its first update).
type judgeRecord struct {
	StartedAt time.Time           `json:"startedAt"`
	Restarts  int                 `json:"restarts,omitempty"`
	Session   *judge.SessionState `json:"session,omitempty"`
}

// judgeSession adapts a judge.Tracker to JudgeSession.
type judgeSession struct {
	mu  sync.Mutex
	t   *judge.Tracker
	rec judgeRecord
	// restarted: this session replaces one that lived before Sluice restarted; resumed:
	// and it continues that session's test (its state was saved and restored).
	restarted, resumed bool
}

// Save returns the session's record with the judge's state (see NewJudgeFactory). A
// state that cannot be encoded is left out: the record alone then restarts the test.
func (j *judgeSession) Save() (json.RawMessage, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	rec := j.rec
	if j.t != nil {
		if st, ok := j.t.State(); ok {
			rec.Session = &st
		}
	}
	b, err := json.Marshal(rec)
	if err != nil && rec.Session != nil {
		rec.Session = nil
		return json.Marshal(rec)
	}
	return b, err
}

// Terminate ends the session; the tracker holds nothing that needs closing.
func (j *judgeSession) Terminate() {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.t = nil
}

// Update reads both clusters and maps the judge's decision: Pass → Successful, Fail →
// Failed, Inconclusive → Inconclusive, NotEnoughData → LowTraffic, Continue → Running.
func (j *judgeSession) Update(ctx context.Context, now time.Time) Measurement {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.t == nil {
		return Measurement{Phase: MeasurementError, Message: "judge: session terminated"}
	}
	if j.rec.StartedAt.IsZero() {
		j.rec.StartedAt = now
	}
	res, err := j.t.Step(ctx, now)
	if err != nil {
		return Measurement{Phase: MeasurementError, Message: "judge: " + err.Error()}
	}
	msg := res.Message
	switch {
	case j.restarted && j.resumed:
		msg = fmt.Sprintf("judge resumed after Sluice restarted (session began %s, evidence kept); %s",
			j.rec.StartedAt.Local().Format(time.RFC3339), msg)
	case j.restarted:
		msg = fmt.Sprintf("judge started over after Sluice restarted (the earlier session, begun %s, left no state to resume); %s",
			j.rec.StartedAt.Local().Format(time.RFC3339), msg)
	}
	ms := Measurement{Message: msg, Details: map[string]float64{},
		Value: strconv.FormatFloat(res.Estimate, 'g', 4, 64), Values: []float64{res.Estimate}}
	for k, v := range res.Details {
		ms.Details[k] = v
	}
	ms.Details["estimate"], ms.Details["bound"] = res.Estimate, res.Bound
	switch res.Decision {
	case judge.Pass:
		ms.Phase = MeasurementSuccessful
	case judge.Fail:
		ms.Phase = MeasurementFailed
	case judge.Inconclusive:
		ms.Phase = MeasurementInconclusive
	case judge.NotEnoughData:
		ms.Phase = MeasurementLowTraffic
	default:
		ms.Phase = MeasurementRunning
	}
	return ms
}
