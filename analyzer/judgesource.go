package analyzer

import (
	"context"
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
// A session starts at the metric's first measurement with the counters at that moment
// and lives in memory: after a restart the judge starts over (its decision is never
// inherited from before the crash).
func NewJudgeFactory(router prometheus.Gatherer) JudgeFactory {
	return func(m model.Metric, baseline, canary string) (JudgeSession, error) {
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
		return &judgeSession{t: judge.NewTracker(cfg, src, baseline, canary)}, nil
	}
}

// judgeSession adapts a judge.Tracker to JudgeSession.
type judgeSession struct {
	mu sync.Mutex
	t  *judge.Tracker
}

// Update reads both clusters and maps the judge's decision: Pass → Successful, Fail →
// Failed, Inconclusive → Inconclusive, NotEnoughData → LowTraffic, Continue → Running.
func (j *judgeSession) Update(ctx context.Context, now time.Time) Measurement {
	j.mu.Lock()
	defer j.mu.Unlock()
	res, err := j.t.Step(ctx, now)
	if err != nil {
		return Measurement{Phase: MeasurementError, Message: "judge: " + err.Error()}
	}
	ms := Measurement{Message: res.Message, Details: map[string]float64{},
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
