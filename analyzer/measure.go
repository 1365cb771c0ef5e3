package analyzer

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/sluice-mesh/sluice/analyzer/provider"
	"github.com/sluice-mesh/sluice/internal/condition"
	"github.com/sluice-mesh/sluice/model"
)

// Querier evaluates an instant PromQL query; the embedded store implements it.
type Querier = provider.Querier

// MeasureRequest is one measurement to take.
type MeasureRequest struct {
	Rollout *model.Rollout
	// Stable and Canary are the release's effective roles (see State).
	Stable, Canary string
	Run            int
	Kind           string
	Metric         model.Metric
	// MinRequests is the effective minimum request count per compared cluster (0: none).
	MinRequests int
	Now         time.Time
}

// Measurer takes one measurement. It must return within the metric's timeout and never
// panic; failures are a Measurement with phase Error.
type Measurer interface {
	Measure(ctx context.Context, req MeasureRequest) Measurement
}

// JudgeSession is one running sequential test (analyzer/judge) for one metric of one
// analysis run. Update returns Running until it decides.
type JudgeSession interface {
	Update(ctx context.Context, now time.Time) Measurement
}

// JudgeFactory starts a judge session for metric m comparing baseline and canary.
type JudgeFactory func(m model.Metric, baseline, canary string) (JudgeSession, error)

// RequestsQuery is the PromQL that counts a cluster's requests over a window, used for
// the minimum request count; %[1]s is the cluster, %[2]s the window. Internal and warm-up
// traffic are not in http_requests_total, so they never count.
const RequestsQuery = `sum(increase(http_requests_total{cluster=%[1]q}[%[2]s]))`

// ProviderMeasurer measures with the configured providers: prometheus (Embedded when the
// provider has no address, else the server at its address), web, and the judge.
type ProviderMeasurer struct {
	Embedded Querier // nil: a prometheus provider without an address is an Error
	Judge    JudgeFactory
	HTTP     *http.Client // web provider; nil: http.DefaultClient

	mu      sync.Mutex
	remotes map[string]*provider.Remote
	judges  map[string]JudgeSession
}

func errorMeasurement(start time.Time, format string, a ...any) Measurement {
	return Measurement{Phase: MeasurementError, Message: fmt.Sprintf(format, a...), StartedAt: start, FinishedAt: start}
}

// Measure takes one measurement.
func (p *ProviderMeasurer) Measure(ctx context.Context, req MeasureRequest) (out Measurement) {
	start := req.Now
	defer func() {
		if r := recover(); r != nil {
			out = errorMeasurement(start, "provider panicked: %v", r)
		}
		if out.StartedAt.IsZero() {
			out.StartedAt = start
		}
		if out.FinishedAt.IsZero() || out.FinishedAt.Before(out.StartedAt) {
			out.FinishedAt = out.StartedAt
		}
	}()
	m := req.Metric
	switch {
	case m.Provider.Judge != nil:
		return p.judge(ctx, req)
	case m.Provider.Prometheus != nil:
		q, err := p.querier(m.Provider.Prometheus)
		if err != nil {
			return errorMeasurement(start, "%v", err)
		}
		if req.MinRequests > 0 {
			if low, msg, err := p.lowTraffic(ctx, q, req); err != nil {
				return errorMeasurement(start, "counting requests: %v", err)
			} else if low {
				return Measurement{Phase: MeasurementLowTraffic, Message: msg, StartedAt: start}
			}
		}
		v, err := q.Query(ctx, m.Provider.Prometheus.Query, req.Now)
		if err != nil {
			return errorMeasurement(start, "%v", err)
		}
		result, values, text, noData, err := provider.Result(v)
		if err != nil {
			return errorMeasurement(start, "%v", err)
		}
		ms := evaluate(m, result, noData)
		ms.Value, ms.Values, ms.StartedAt = text, values, start
		return ms
	case m.Provider.Web != nil:
		v, err := provider.Web(ctx, p.HTTP, m.Provider.Web)
		if err != nil {
			return errorMeasurement(start, "%v", err)
		}
		noData := v == nil
		if f, ok := v.(float64); ok && math.IsNaN(f) {
			noData = true
		}
		ms := evaluate(m, v, noData)
		ms.Value, ms.StartedAt = fmt.Sprint(v), start
		if f, ok := v.(float64); ok {
			ms.Values = []float64{f}
		}
		return ms
	}
	return errorMeasurement(start, "metric %s has no supported provider", m.Name)
}

func (p *ProviderMeasurer) querier(pp *model.PrometheusProvider) (Querier, error) {
	if pp.Address == "" {
		if p.Embedded == nil {
			return nil, fmt.Errorf("embedded metrics store not available")
		}
		return p.Embedded, nil
	}
	key := fmt.Sprintf("%s|%s|%s|%s|%s|%s|%s|%v", pp.Address, pp.Timeout, pp.BasicAuthUser,
		pp.BasicAuthPasswordFile, pp.BasicAuthPasswordEnv, pp.BearerTokenFile, pp.BearerTokenEnv, pp.Headers)
	p.mu.Lock()
	defer p.mu.Unlock()
	if r, ok := p.remotes[key]; ok {
		return r, nil
	}
	r, err := provider.NewRemote(pp)
	if err != nil {
		return nil, err
	}
	if p.remotes == nil {
		p.remotes = map[string]*provider.Remote{}
	}
	p.remotes[key] = r
	return r, nil
}

// trafficClusters returns the clusters whose request counts gate a measurement: both
// for a canary; for blue/green only the cluster serving traffic (none before the switch,
// the new active after it).
func trafficClusters(req MeasureRequest) []string {
	switch req.Kind {
	case KindPrePromotion:
		return nil
	case KindPostPromotion:
		return []string{req.Canary}
	}
	return []string{req.Stable, req.Canary}
}

func (p *ProviderMeasurer) lowTraffic(ctx context.Context, q Querier, req MeasureRequest) (bool, string, error) {
	window := req.Metric.Interval
	if window <= 0 {
		window = time.Minute
	}
	window = max(window, 10*time.Second)
	for _, c := range trafficClusters(req) {
		v, err := q.Query(ctx, fmt.Sprintf(RequestsQuery, c, promDuration(window)), req.Now)
		if err != nil {
			return false, "", err
		}
		_, values, _, _, err := provider.Result(v)
		if err != nil {
			return false, "", err
		}
		n := 0.0
		if len(values) > 0 && !math.IsNaN(values[0]) {
			n = values[0]
		}
		if n < float64(req.MinRequests) {
			return true, fmt.Sprintf("low traffic: %s served %.0f requests in the last %s, fewer than the %d needed; waiting",
				c, n, window, req.MinRequests), nil
		}
	}
	return false, "", nil
}

// promDuration formats d as a PromQL duration (whole seconds).
func promDuration(d time.Duration) string {
	return fmt.Sprintf("%ds", int(d.Seconds()))
}

var conds sync.Map // condition source → *condition.Condition or error

func compiled(src string) (*condition.Condition, error) {
	if src == "" {
		return nil, nil
	}
	if v, ok := conds.Load(src); ok {
		if err, isErr := v.(error); isErr {
			return nil, err
		}
		return v.(*condition.Condition), nil
	}
	c, err := condition.Compile(src)
	if err != nil {
		conds.Store(src, err)
		return nil, err
	}
	conds.Store(src, c)
	return c, nil
}

// evaluate applies the metric's conditions to result with Argo's rules. No data (an
// empty vector, NaN, null) is Inconclusive unless a condition handles it itself.
func evaluate(m model.Metric, result any, noData bool) Measurement {
	succ, err := compiled(m.SuccessCondition)
	if err != nil {
		return Measurement{Phase: MeasurementError, Message: "successCondition: " + err.Error()}
	}
	fail, err := compiled(m.FailureCondition)
	if err != nil {
		return Measurement{Phase: MeasurementError, Message: "failureCondition: " + err.Error()}
	}
	if noData && !succ.HandlesNoData() && !fail.HandlesNoData() {
		return Measurement{Phase: MeasurementInconclusive, Message: "no data (empty result or NaN); not a pass"}
	}
	phase, err := condition.Evaluate(succ, fail, result)
	if err != nil {
		return Measurement{Phase: MeasurementError, Message: err.Error()}
	}
	var why []string
	if m.SuccessCondition != "" {
		why = append(why, "successCondition "+m.SuccessCondition)
	}
	if m.FailureCondition != "" {
		why = append(why, "failureCondition "+m.FailureCondition)
	}
	msg := string(phase)
	if len(why) > 0 {
		msg += " by " + strings.Join(why, ", ")
	}
	return Measurement{Phase: MeasurementPhase(phase), Message: msg}
}

func (p *ProviderMeasurer) judge(ctx context.Context, req MeasureRequest) Measurement {
	if p.Judge == nil {
		return errorMeasurement(req.Now, "judge provider not available")
	}
	j := req.Metric.Provider.Judge
	base, can := req.Stable, req.Canary
	if j.Baseline != "" {
		base = j.Baseline
	}
	if j.Canary != "" {
		can = j.Canary
	}
	key := fmt.Sprintf("%s/%d/%s", req.Rollout.Name, req.Run, req.Metric.Name)
	p.mu.Lock()
	s, ok := p.judges[key]
	if !ok {
		var err error
		s, err = p.Judge(req.Metric, base, can)
		if err != nil {
			p.mu.Unlock()
			return errorMeasurement(req.Now, "judge: %v", err)
		}
		if p.judges == nil {
			p.judges = map[string]JudgeSession{}
		}
		p.judges[key] = s
	}
	p.mu.Unlock()
	ms := s.Update(ctx, req.Now)
	if ms.Phase.completed() {
		p.mu.Lock()
		delete(p.judges, key)
		p.mu.Unlock()
	}
	return ms
}
