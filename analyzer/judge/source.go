package judge

import (
	"context"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	pmodel "github.com/prometheus/common/model"
)

// Source reads one cluster's cumulative counters.
type Source interface {
	Stats(ctx context.Context, cluster string) (ClusterStats, error)
}

// Metric names the sources read.
const (
	RouterRequests  = "http_requests_total"
	RouterErrors    = "http_errors_total"
	RouterDuration  = "http_request_duration_seconds"
	EnvoyRequests   = "envoy_cluster_upstream_rq_total"
	EnvoyClassCount = "envoy_cluster_upstream_rq_xx"
	EnvoyTimeBucket = "envoy_cluster_upstream_rq_time_bucket"
)

// GathererSource reads Sluice's router in-process: http_requests_total, http_errors_total
// with a 5xx status_code as errors, and the http_request_duration_seconds histogram,
// each summed over every series whose label cluster equals the cluster's name. The
// router keeps internal and warm-up traffic out of these series.
func GathererSource(g prometheus.Gatherer) Source { return gathererSource{g} }

type gathererSource struct{ g prometheus.Gatherer }

func (s gathererSource) Stats(_ context.Context, cluster string) (ClusterStats, error) {
	mfs, err := s.g.Gather()
	if err != nil && len(mfs) == 0 {
		return ClusterStats{}, fmt.Errorf("judge: gather: %w", err)
	}
	var st ClusterStats
	hist := map[float64]float64{}
	for _, mf := range mfs {
		name := mf.GetName()
		if name != RouterRequests && name != RouterErrors && name != RouterDuration {
			continue
		}
		for _, m := range mf.GetMetric() {
			if label(m, "cluster") != cluster {
				continue
			}
			switch name {
			case RouterRequests:
				st.Requests += m.GetCounter().GetValue()
			case RouterErrors:
				if strings.HasPrefix(label(m, "status_code"), "5") {
					st.Errors += m.GetCounter().GetValue()
				}
			case RouterDuration:
				h := m.GetHistogram()
				st.Latency.Count += float64(h.GetSampleCount())
				for _, b := range h.GetBucket() {
					if !math.IsInf(b.GetUpperBound(), 1) {
						hist[b.GetUpperBound()] += float64(b.GetCumulativeCount())
					}
				}
			}
		}
	}
	st.Latency.Bounds, st.Latency.Counts = sortedBuckets(hist)
	return st, nil
}

func label(m *dto.Metric, name string) string {
	for _, lp := range m.GetLabel() {
		if lp.GetName() == name {
			return lp.GetValue()
		}
	}
	return ""
}

func sortedBuckets(h map[float64]float64) (bounds, counts []float64) {
	for b := range h {
		bounds = append(bounds, b)
	}
	sort.Float64s(bounds)
	counts = make([]float64, len(bounds))
	for i, b := range bounds {
		counts[i] = h[b]
	}
	return bounds, counts
}

// PromQuerier is the part of the Prometheus HTTP API client
// (github.com/prometheus/client_golang/api/prometheus/v1.API) the judge uses.
type PromQuerier interface {
	Query(ctx context.Context, query string, ts time.Time, opts ...v1.Option) (pmodel.Value, v1.Warnings, v1.Infos, error)
}

// PrometheusSource reads Envoy's cluster stats from a Prometheus server, by
// envoy_cluster_name: envoy_cluster_upstream_rq_total as requests,
// envoy_cluster_upstream_rq_xx{envoy_response_code_class="5"} as errors and
// envoy_cluster_upstream_rq_time_bucket (milliseconds, converted to seconds) as the latency
// histogram. A series Prometheus does not have (no 5xx yet) reads as zero. Envoy does not
// exclude warm-up traffic, so ConfigFrom gives this source a 30 s burn-in by default.
func PrometheusSource(api PromQuerier) Source { return promSource{api} }

type promSource struct{ api PromQuerier }

func (s promSource) Stats(ctx context.Context, cluster string) (ClusterStats, error) {
	sel := fmt.Sprintf("envoy_cluster_name=%q", cluster)
	now := time.Now()
	var st ClusterStats
	req, err := s.scalar(ctx, fmt.Sprintf("sum(%s{%s})", EnvoyRequests, sel), now)
	if err != nil {
		return st, err
	}
	errs, err := s.scalar(ctx, fmt.Sprintf(`sum(%s{%s,envoy_response_code_class="5"})`, EnvoyClassCount, sel), now)
	if err != nil {
		return st, err
	}
	st.Requests, st.Errors = req, errs
	v, _, _, err := s.api.Query(ctx, fmt.Sprintf("sum by (le) (%s{%s})", EnvoyTimeBucket, sel), now)
	if err != nil {
		return st, fmt.Errorf("judge: prometheus: %w", err)
	}
	vec, _ := v.(pmodel.Vector)
	hist := map[float64]float64{}
	for _, smp := range vec {
		le, perr := strconv.ParseFloat(string(smp.Metric["le"]), 64)
		if perr != nil || math.IsNaN(float64(smp.Value)) {
			continue
		}
		if math.IsInf(le, 1) {
			st.Latency.Count = float64(smp.Value)
			continue
		}
		hist[le/1000] = float64(smp.Value)
	}
	st.Latency.Bounds, st.Latency.Counts = sortedBuckets(hist)
	return st, nil
}

// scalar runs an instant query that sums to one number; no data is 0.
func (s promSource) scalar(ctx context.Context, q string, ts time.Time) (float64, error) {
	v, _, _, err := s.api.Query(ctx, q, ts)
	if err != nil {
		return 0, fmt.Errorf("judge: prometheus: %s: %w", q, err)
	}
	switch x := v.(type) {
	case pmodel.Vector:
		if len(x) == 0 || math.IsNaN(float64(x[0].Value)) {
			return 0, nil
		}
		return float64(x[0].Value), nil
	case *pmodel.Scalar:
		return float64(x.Value), nil
	}
	return 0, fmt.Errorf("judge: prometheus: %s: unexpected result type %T", q, v)
}

// Tracker runs a Session over a Source: the first Step reads the starting counters, every
// later Step reads them again and updates the test. Not safe for concurrent use.
type Tracker struct {
	cfg              Config
	src              Source
	baseline, canary string
	session          *Session
}

// NewTracker prepares a judge of canary against baseline, read from src.
func NewTracker(cfg Config, src Source, baseline, canary string) *Tracker {
	return &Tracker{cfg: cfg.withDefaults(), src: src, baseline: baseline, canary: canary}
}

// State returns the session's state once the first Step has started it (ok false
// before): store it to continue after a restart with Restore.
func (t *Tracker) State() (st SessionState, ok bool) {
	if t.session == nil {
		return SessionState{}, false
	}
	return t.session.State(), true
}

// Restore continues from a state State returned (see the package function Restore);
// the next Step updates it instead of starting a new session. After a restart of the
// process whose counters the source reads, those counters start again from zero: the
// session sees them go backwards, drops that one interval and carries on.
func (t *Tracker) Restore(st SessionState) error {
	s, err := Restore(t.cfg, st)
	if err != nil {
		return err
	}
	t.session = s
	return nil
}

// Step reads both clusters at now and returns the verdict. A read error is returned as is
// (the session keeps its state; the next Step resumes).
func (t *Tracker) Step(ctx context.Context, now time.Time) (Result, error) {
	b, err := t.src.Stats(ctx, t.baseline)
	if err != nil {
		return Result{}, err
	}
	c, err := t.src.Stats(ctx, t.canary)
	if err != nil {
		return Result{}, err
	}
	if t.session == nil {
		t.session = NewSession(t.cfg, now, b, c)
		return Result{Decision: NotEnoughData, Message: fmt.Sprintf("started: judging %s against %s (%s)", t.canary, t.baseline, t.cfg.Signal),
			Details: map[string]float64{"elapsedSeconds": 0}}, nil
	}
	return t.session.Update(now, b, c), nil
}
