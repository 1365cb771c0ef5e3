package analyzer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	pmodel "github.com/prometheus/common/model"

	"github.com/sluice-mesh/sluice/model"
)

// fakeQuerier answers queries from a map; requests queries by cluster.
type fakeQuerier struct {
	values   map[string]pmodel.Value
	requests map[string]float64
	err      error
}

func (f *fakeQuerier) Query(ctx context.Context, q string, ts time.Time) (pmodel.Value, error) {
	if f.err != nil {
		return nil, f.err
	}
	// The router's request series exist for the clusters in requests; Envoy's never.
	if strings.Contains(q, "http_requests_total{cluster=") || strings.Contains(q, "envoy_cluster_upstream_rq_total") {
		for c, n := range f.requests {
			if strings.Contains(q, "http_requests_total{cluster=") && strings.Contains(q, `"`+c+`"`) {
				if strings.HasPrefix(q, "count(") {
					return pmodel.Vector{{Value: 1}}, nil
				}
				return pmodel.Vector{{Value: pmodel.SampleValue(n)}}, nil
			}
		}
		return pmodel.Vector{}, nil
	}
	return f.values[q], nil
}

func embeddedMetric(query, success, failure string) model.Metric {
	return model.Metric{Name: "m", Interval: 30 * time.Second, SuccessCondition: success, FailureCondition: failure,
		Provider: model.Provider{Prometheus: &model.PrometheusProvider{Query: query}}}
}

func TestProviderMeasurerEmbedded(t *testing.T) {
	q := &fakeQuerier{
		values: map[string]pmodel.Value{
			"ok":    pmodel.Vector{{Value: 0.01}},
			"bad":   pmodel.Vector{{Value: 0.3}},
			"mid":   pmodel.Vector{{Value: 0.07}},
			"empty": pmodel.Vector{},
			"nan":   pmodel.Vector{{Value: pmodel.SampleValue(math.NaN())}},
			"sc":    &pmodel.Scalar{Value: 2},
		},
		requests: map[string]float64{"stable": 500, "canary": 50},
	}
	pm := &ProviderMeasurer{Embedded: q}
	req := func(m model.Metric, min int) MeasureRequest {
		return MeasureRequest{Rollout: canary(), Stable: "stable", Canary: "canary", Kind: KindInline, Metric: m, MinRequests: min, Now: t0}
	}
	cases := []struct {
		name   string
		metric model.Metric
		min    int
		want   MeasurementPhase
	}{
		{"success", embeddedMetric("ok", "result[0] < 0.05", ""), 20, MeasurementSuccessful},
		{"failed", embeddedMetric("bad", "result[0] < 0.05", ""), 20, MeasurementFailed},
		{"between conditions", embeddedMetric("mid", "result[0] < 0.05", "result[0] > 0.1"), 0, MeasurementInconclusive},
		{"failure only", embeddedMetric("bad", "", "result[0] > 0.1"), 0, MeasurementFailed},
		// Argo's expr semantics: indexing an empty result is an Error; NaN < 0.05 is false.
		{"empty indexed: Error", embeddedMetric("empty", "result[0] < 0.05", ""), 0, MeasurementError},
		{"NaN fails a success condition", embeddedMetric("nan", "result[0] < 0.05", ""), 0, MeasurementFailed},
		// Sluice's one difference: what would pass on no data is Inconclusive.
		{"NaN would pass a failure condition", embeddedMetric("nan", "", "result[0] > 0.1"), 0, MeasurementInconclusive},
		{"empty would pass all()", embeddedMetric("empty", "all(result, {# < 0.05})", ""), 0, MeasurementInconclusive},
		{"NaN handled by the condition", embeddedMetric("nan", "isNaN(result[0]) || result[0] < 0.05", ""), 0, MeasurementSuccessful},
		{"guarded empty", embeddedMetric("empty", "len(result) == 0 || result[0] < 0.05", ""), 0, MeasurementSuccessful},
		{"scalar", embeddedMetric("sc", "result == 2", ""), 0, MeasurementSuccessful},
		{"low canary traffic", embeddedMetric("ok", "result[0] < 0.05", ""), 100, MeasurementLowTraffic},
		{"bad condition", embeddedMetric("ok", "result[0] <", ""), 0, MeasurementError},
	}
	for _, c := range cases {
		ms := pm.Measure(context.Background(), req(c.metric, c.min))
		if ms.Phase != c.want {
			t.Errorf("%s: %s (%s), want %s", c.name, ms.Phase, ms.Message, c.want)
		}
	}
	// The built-in store holds the router's series and nothing else: a cluster with no
	// series there has served no request through the router — 0, LowTraffic, waiting.
	unseen := req(embeddedMetric("ok", "result[0] < 0.05", ""), 20)
	unseen.Canary = "mesh-canary"
	if ms := pm.Measure(context.Background(), unseen); ms.Phase != MeasurementLowTraffic ||
		!strings.Contains(ms.Message, "mesh-canary served 0 requests in the last 30s, fewer than the 20 needed; waiting") {
		t.Fatalf("cluster with no series in the built-in store: %+v", ms)
	}
	// Another Prometheus with no request series for a cluster (a service's own metrics,
	// labelled otherwise) cannot gate on minRequests: the measurement says so.
	low, msg, err := pm.lowTraffic(context.Background(), q, unseen, false)
	if err != nil || low || !strings.Contains(msg, "minRequests not enforced") || !strings.Contains(msg, "mesh-canary") {
		t.Fatalf("uncountable cluster in a remote Prometheus: low %v, %q, %v", low, msg, err)
	}
	// ... while a counted cluster below the minimum still waits, whatever the other one.
	unseen.Stable, unseen.Canary, unseen.MinRequests = "mesh-stable", "canary", 100
	if low, msg, err := pm.lowTraffic(context.Background(), q, unseen, false); err != nil || !low {
		t.Fatalf("counted low traffic in a remote Prometheus: %v %q %v", low, msg, err)
	}
	q.err = errors.New("connection refused")
	if ms := pm.Measure(context.Background(), req(embeddedMetric("ok", "result[0] < 0.05", ""), 0)); ms.Phase != MeasurementError {
		t.Fatalf("outage: %+v", ms)
	}
	if ms := (&ProviderMeasurer{}).Measure(context.Background(), req(embeddedMetric("ok", "", ""), 0)); ms.Phase != MeasurementError {
		t.Fatalf("no embedded store: %+v", ms)
	}
	judge := model.Metric{Name: "j", Provider: model.Provider{Judge: &model.JudgeProvider{Signal: "errors"}}}
	if ms := pm.Measure(context.Background(), req(judge, 0)); ms.Phase != MeasurementError || !strings.Contains(ms.Message, "not available") {
		t.Fatalf("judge without factory: %+v", ms)
	}
}

type fakeJudge struct {
	calls      int
	terminated bool
	restored   json.RawMessage
}

func (f *fakeJudge) Save() (json.RawMessage, error) {
	return json.RawMessage(fmt.Sprintf(`{"calls":%d}`, f.calls)), nil
}

func (f *fakeJudge) Terminate() { f.terminated = true }

func (f *fakeJudge) Update(ctx context.Context, now time.Time) Measurement {
	f.calls++
	if f.calls < 3 {
		return Measurement{Phase: MeasurementRunning, Message: "collecting"}
	}
	return Measurement{Phase: MeasurementSuccessful, Details: map[string]float64{"estimate": 1}}
}

func TestProviderMeasurerJudgeSessionPerRun(t *testing.T) {
	var created []string
	var judges []*fakeJudge
	pm := &ProviderMeasurer{Judge: func(m model.Metric, base, can string, restore json.RawMessage) (JudgeSession, error) {
		created = append(created, base+"/"+can)
		fj := &fakeJudge{restored: restore}
		judges = append(judges, fj)
		return fj, nil
	}}
	m := model.Metric{Name: "j", Provider: model.Provider{Judge: &model.JudgeProvider{Signal: "errors"}}}
	r := MeasureRequest{Rollout: canary(), Stable: "stable", Canary: "canary", Run: 1, Metric: m, Now: t0}
	var phases []MeasurementPhase
	var saved []string
	for i := 0; i < 3; i++ {
		ms := pm.Measure(context.Background(), r)
		phases = append(phases, ms.Phase)
		saved = append(saved, string(ms.ProviderState))
	}
	if len(created) != 1 || created[0] != "stable/canary" || phases[0] != MeasurementRunning || phases[2] != MeasurementSuccessful {
		t.Fatalf("created %v phases %v", created, phases)
	}
	// Every measurement carries the session's state for State; a decided session ends.
	if saved[0] != `{"calls":1}` || saved[2] != `{"calls":3}` || !judges[0].terminated || pm.sessions() != 0 {
		t.Fatalf("saved %v terminated %v sessions %d", saved, judges[0].terminated, pm.sessions())
	}

	// A run that ends while its judge is still running terminates the session
	// (Terminator), and a session of a restarted Sluice gets the saved state back.
	r.Run = 2
	r.ProviderState = json.RawMessage(`{"calls":7}`)
	if ms := pm.Measure(context.Background(), r); ms.Phase != MeasurementRunning {
		t.Fatalf("%+v", ms)
	}
	if string(judges[1].restored) != `{"calls":7}` || pm.sessions() != 1 {
		t.Fatalf("restore %s sessions %d", judges[1].restored, pm.sessions())
	}
	pm.Terminate("app", 2, []string{"j"})
	if !judges[1].terminated || pm.sessions() != 0 {
		t.Fatal("session not terminated with its run")
	}
}

// TestMinRequestsBoundary: a cluster that served exactly minRequests requests in the
// window counts; one fewer is LowTraffic.
func TestMinRequestsBoundary(t *testing.T) {
	for _, c := range []struct {
		served float64
		want   MeasurementPhase
	}{{49, MeasurementLowTraffic}, {50, MeasurementSuccessful}, {51, MeasurementSuccessful}} {
		q := &fakeQuerier{values: map[string]pmodel.Value{"ok": pmodel.Vector{{Value: 0.01}}},
			requests: map[string]float64{"stable": 1000, "canary": c.served}}
		pm := &ProviderMeasurer{Embedded: q}
		ms := pm.Measure(context.Background(), MeasureRequest{Rollout: canary(), Stable: "stable", Canary: "canary",
			Kind: KindInline, Metric: embeddedMetric("ok", "result[0] < 0.05", ""), MinRequests: 50, Now: t0})
		if ms.Phase != c.want {
			t.Errorf("canary served %v of minRequests 50: %s (%s), want %s", c.served, ms.Phase, ms.Message, c.want)
		}
	}
}
