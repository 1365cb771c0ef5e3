package analyzer

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/prometheus/promql/parser"

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
	// ProviderState is what the provider saved for this metric of this run (see
	// MetricRun.ProviderState); a provider resumes from it after a restart.
	ProviderState json.RawMessage
}

// Measurer takes one measurement. It must return within the metric's timeout and never
// panic; failures are a Measurement with phase Error.
type Measurer interface {
	Measure(ctx context.Context, req MeasureRequest) Measurement
}

// JudgeSession is one running sequential test (analyzer/judge) for one metric of one
// analysis run. Update returns Running until it decides. Save returns the session's
// state for State (MetricRun.ProviderState), from which the factory restores it after a
// restart; Terminate ends it (its run ended, decided or not).
type JudgeSession interface {
	Update(ctx context.Context, now time.Time) Measurement
	Save() (json.RawMessage, error)
	Terminate()
}

// JudgeFactory starts a judge session for metric m comparing baseline and canary;
// restore, when not empty, is what an earlier session of the same metric and run saved
// (Sluice restarted in between).
type JudgeFactory func(m model.Metric, baseline, canary string, restore json.RawMessage) (JudgeSession, error)

// RequestsQuery is the PromQL that counts a cluster's requests over a window, used for
// the minimum request count; %[1]s is the cluster, %[2]s the window. Internal and warm-up
// traffic are not in http_requests_total, so they never count.
const RequestsQuery = `sum(increase(http_requests_total{cluster=%[1]q}[%[2]s]))`

// requestCounters are the series the minimum request count reads, in order: Sluice's
// router (label cluster), then Envoy's per-cluster stats. The first whose series exist for
// a cluster counts its requests; when neither exists in the metric's Prometheus (a
// service's own metrics, say), the count cannot be known there and the gate is not
// enforced — the measurement says so, and its own no-data rule still applies.
var requestCounters = []struct{ present, count string }{
	{`count(http_requests_total{cluster=%[1]q})`, RequestsQuery},
	{`count(envoy_cluster_upstream_rq_total{envoy_cluster_name=%[1]q})`,
		`sum(increase(envoy_cluster_upstream_rq_total{envoy_cluster_name=%[1]q}[%[2]s]))`},
}

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
		var uncounted string
		if req.MinRequests > 0 {
			low, msg, err := p.lowTraffic(ctx, q, req, m.Provider.Prometheus.Address == "")
			if err != nil {
				return errorMeasurement(start, "counting requests: %v", err)
			}
			if low {
				return Measurement{Phase: MeasurementLowTraffic, Message: msg, StartedAt: start}
			}
			uncounted = msg
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
		if uncounted != "" {
			ms.Message += " (" + uncounted + ")"
		}
		return ms
	case m.Provider.Web != nil:
		v, text, err := provider.Web(ctx, p.HTTP, m.Provider.Web)
		if err != nil {
			return errorMeasurement(start, "%v", err)
		}
		ms := evaluate(m, v, provider.IsNoData(v))
		ms.Value, ms.StartedAt = text, start
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

// lowTraffic reports whether a compared cluster served fewer than MinRequests requests in
// the metric's window (TrafficWindow), with the message to show. builtIn: q is Sluice's
// own store, which holds the router's series and nothing else, so a cluster without a
// series there has served no request through the router: 0 requests, LowTraffic. For
// another Prometheus, a cluster with neither counter (see requestCounters) cannot be
// counted there; when low is false, msg then names those clusters.
func (p *ProviderMeasurer) lowTraffic(ctx context.Context, q Querier, req MeasureRequest, builtIn bool) (low bool, msg string, err error) {
	window := TrafficWindow(req.Metric)
	var uncounted []string
	for _, c := range trafficClusters(req) {
		n, counted, err := requestCount(ctx, q, c, window, req.Now, builtIn)
		if err != nil {
			return false, "", err
		}
		if !counted {
			uncounted = append(uncounted, c)
			continue
		}
		if n < float64(req.MinRequests) {
			return true, fmt.Sprintf("low traffic: %s served %.0f requests in the last %s, fewer than the %d needed; waiting",
				c, n, window, req.MinRequests), nil
		}
	}
	if len(uncounted) > 0 {
		msg = fmt.Sprintf("minRequests not enforced: this Prometheus has no http_requests_total{cluster=...} or envoy_cluster_upstream_rq_total series for %s",
			strings.Join(uncounted, ", "))
	}
	return false, msg, nil
}

// requestCount counts cluster's requests over window. builtIn: with the router's counter,
// no series being 0. Otherwise with the first of requestCounters whose series exist;
// counted is false when none does.
func requestCount(ctx context.Context, q Querier, cluster string, window time.Duration, now time.Time, builtIn bool) (n float64, counted bool, err error) {
	for _, rc := range requestCounters {
		if !builtIn {
			v, err := q.Query(ctx, fmt.Sprintf(rc.present, cluster), now)
			if err != nil {
				return 0, false, err
			}
			if _, values, _, _, err := provider.Result(v); err != nil {
				return 0, false, err
			} else if len(values) == 0 || math.IsNaN(values[0]) || values[0] == 0 {
				continue
			}
		}
		v, err := q.Query(ctx, fmt.Sprintf(rc.count, cluster, promDuration(window)), now)
		if err != nil {
			return 0, false, err
		}
		_, values, _, _, err := provider.Result(v)
		if err != nil {
			return 0, false, err
		}
		if len(values) > 0 && !math.IsNaN(values[0]) {
			n = values[0]
		}
		return n, true, nil
	}
	return 0, false, nil
}

// minTrafficWindow is the shortest window requests are counted over.
const minTrafficWindow = 10 * time.Second

// TrafficWindow is the window over which the minimum request count is counted before a
// measurement of m counts: the longest range its query reads (the [1m] of
// rate(...[1m]), a subquery's range) — the traffic the measurement looks at; for a
// query without a range, the metric's interval; without either, one minute. Never
// shorter than 10 s.
func TrafficWindow(m model.Metric) time.Duration {
	var w time.Duration
	if p := m.Provider.Prometheus; p != nil {
		w = longestRange(p.Query)
	}
	if w <= 0 {
		w = m.Interval
	}
	if w <= 0 {
		w = time.Minute
	}
	return max(w, minTrafficWindow)
}

var ranges sync.Map // query → time.Duration (0: none, or not PromQL)

// longestRange returns the longest range selector or subquery range in query.
func longestRange(query string) time.Duration {
	if v, ok := ranges.Load(query); ok {
		return v.(time.Duration)
	}
	var longest time.Duration
	if expr, err := promParser.ParseExpr(query); err == nil {
		parser.Inspect(expr, func(n parser.Node, _ []parser.Node) error {
			switch x := n.(type) {
			case *parser.MatrixSelector:
				longest = max(longest, x.Range)
			case *parser.SubqueryExpr:
				longest = max(longest, x.Range)
			}
			return nil
		})
	}
	ranges.Store(query, longest)
	return longest
}

var promParser = parser.NewParser(parser.Options{})

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

// evaluate applies the metric's conditions to result exactly as Argo's
// evaluate.EvaluateResult does, with expr's semantics for every value (NaN < 0.5 is
// false, so NaN with only a successCondition is Failed; indexing an empty result is an
// Error). One deliberate difference: no data is never a pass. When the result is no
// data (empty, null, or all NaN) and the conditions would make it Successful without
// handling that case themselves (len, isNaN, isNil, default), it is Inconclusive.
func evaluate(m model.Metric, result any, noData bool) Measurement {
	succ, err := compiled(m.SuccessCondition)
	if err != nil {
		return Measurement{Phase: MeasurementError, Message: "successCondition: " + err.Error()}
	}
	fail, err := compiled(m.FailureCondition)
	if err != nil {
		return Measurement{Phase: MeasurementError, Message: "failureCondition: " + err.Error()}
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
	if phase == condition.Successful && noData && !succ.HandlesNoData() && !fail.HandlesNoData() {
		return Measurement{Phase: MeasurementInconclusive,
			Message: "no data (empty result or NaN) would pass " + strings.Join(why, ", ") + "; Sluice never passes on no data"}
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
	key := judgeKey(req.Rollout.Name, req.Run, req.Metric.Name)
	p.mu.Lock()
	s, ok := p.judges[key]
	if !ok {
		var err error
		s, err = p.Judge(req.Metric, base, can, req.ProviderState)
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
	if saved, err := s.Save(); err == nil && len(saved) > 0 {
		ms.ProviderState = saved
	}
	if ms.Phase.completed() {
		p.Terminate(req.Rollout.Name, req.Run, []string{req.Metric.Name})
	}
	return ms
}

func judgeKey(rollout string, run int, metric string) string {
	return fmt.Sprintf("%s/%d/%s", rollout, run, metric)
}

// Terminate ends the judge sessions of the given metrics of a run (Terminator).
func (p *ProviderMeasurer) Terminate(rollout string, run int, metrics []string) {
	p.mu.Lock()
	var ended []JudgeSession
	for _, m := range metrics {
		k := judgeKey(rollout, run, m)
		if s, ok := p.judges[k]; ok {
			ended = append(ended, s)
			delete(p.judges, k)
		}
	}
	p.mu.Unlock()
	for _, s := range ended {
		s.Terminate()
	}
}

// sessions is the number of live judge sessions (tests).
func (p *ProviderMeasurer) sessions() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.judges)
}
