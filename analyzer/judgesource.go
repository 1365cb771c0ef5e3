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
// What it saves (Save, kept in the rollout's State) is a record of the session, not the
// judge's evidence: analyzer/judge offers no serialisable session state yet. So a
// session restored after a restart starts a fresh test from the counters at that
// moment, and its measurements say so; its decision is never inherited from before the
// restart. The state slot is where the judge's own state goes once it has one.
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
				js.rec.Restarts = prev.Restarts + 1
				js.restartedFrom = prev.StartedAt
			}
			js.restarted = true
		}
		return js, nil
	}
}

// judgeRecord is what a judge session saves: when it started and how many times Sluice
// restarted under it.
type judgeRecord struct {
	StartedAt time.Time `json:"startedAt"`
	Restarts  int       `json:"restarts,omitempty"`
}

// judgeSession adapts a judge.Tracker to JudgeSession.
type judgeSession struct {
	mu  sync.Mutex
	t   *judge.Tracker
	rec judgeRecord
	// restarted: this session replaces one that lived before Sluice restarted.
	restarted     bool
	restartedFrom time.Time
}

// Save returns the session's record (see NewJudgeFactory).
func (j *judgeSession) Save() (json.RawMessage, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	return json.Marshal(j.rec)
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
	if j.restarted {
		msg = fmt.Sprintf("judge restarted at %s after Sluice restarted (session began %s): the evidence before the restart is not carried over; %s",
			j.rec.StartedAt.UTC().Format(time.RFC3339), j.restartedFrom.UTC().Format(time.RFC3339), msg)
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
