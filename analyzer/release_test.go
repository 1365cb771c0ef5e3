package analyzer

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluice-mesh/sluice/model"
)

// Release 1 fails its analysis; release 2 is promoted; release 3 is superseded. Each
// earlier release stays in the state with its outcome, reason, whole weight history and
// measurements; the current release's history starts with it.
func TestReleaseHistory(t *testing.T) {
	m := metric("errors", func(m *model.Metric) { m.Interval = 10 * time.Second; m.Count = 2 })
	r := canary(weightStep(20), analysisStep(m), weightStep(50))
	d := newDriver(t, r)
	d.answer(MeasurementSuccessful)
	d.advance(10 * time.Second)
	d.answer(MeasurementFailed)
	d.expect(PhaseDegraded, 1, 0)
	d.advance(time.Minute)

	d.tick(Inputs{Commands: []CommandKind{CmdStart}})
	if len(d.st.Releases) != 1 {
		t.Fatalf("releases %+v", d.st.Releases)
	}
	rel := d.st.Releases[0]
	if rel.Outcome != OutcomeAborted || rel.AbortCause != AbortByAnalysis || !strings.Contains(rel.Reason, "aborted: analysis tmpl Failed") ||
		!rel.StartedAt.Equal(t0) || !rel.EndedAt.Equal(d.now) || rel.Step != 1 {
		t.Fatalf("release 1: %+v", rel)
	}
	// Its chart: 0 → 20 → 0, to its very end.
	var ws []string
	for _, p := range rel.History {
		ws = append(ws, fmt.Sprintf("%d/%d@%s", p.SetWeight, p.ActualWeight, p.Time.Sub(t0)))
	}
	if got := strings.Join(ws, " "); got != "0/0@0s 20/0@0s 20/20@0s 0/20@10s 0/0@10s 0/0@1m10s" {
		t.Fatalf("release 1 history: %s", got)
	}
	if len(rel.Runs) != 1 || len(rel.Runs[0].Metrics[0].Measurements) != 2 || rel.Runs[0].Phase != MeasurementFailed {
		t.Fatalf("release 1 runs: %+v", rel.Runs)
	}
	if h := d.st.History; len(h) == 0 || h[0].Time.Before(d.now) {
		t.Fatalf("the new release's history starts before it: %+v", h)
	}

	d.answer(MeasurementSuccessful)
	d.advance(10 * time.Second)
	d.answer(MeasurementSuccessful)
	d.expect(PhaseHealthy, 3, 100)
	for i := 0; i < 12; i++ {
		d.advance(time.Minute)
		d.tick(Inputs{Commands: []CommandKind{CmdAbort}})
		d.tick(Inputs{Commands: []CommandKind{CmdStart}})
	}
	if len(d.st.Releases) != maxReleases {
		t.Fatalf("%d releases kept, want %d", len(d.st.Releases), maxReleases)
	}
	last := d.st.Releases[len(d.st.Releases)-1]
	if last.Outcome != OutcomeAborted || last.AbortCause != AbortByOperator {
		t.Fatalf("last release %+v", last)
	}
	s := StatusOf(r, &d.st)
	if len(s.Releases) != maxReleases || s.Releases[0].StartedAt.After(s.Releases[9].StartedAt) {
		t.Fatalf("status releases %+v", s.Releases)
	}

	// A new revision in the middle of a release supersedes it; its live run ends.
	d = newDriver(t, r)
	d.expect(PhaseProgressing, 1, 20)
	r2 := canary(weightStep(20), analysisStep(m), weightStep(50))
	r2.Revision = "r2"
	st := NewState(r2, &d.st, d.now.Add(time.Second))
	if len(st.Releases) != 1 || st.Releases[0].Outcome != OutcomeSuperseded || st.Releases[0].Runs[0].Phase != MeasurementTerminated ||
		st.Releases[0].Runs[0].Metrics[0].Phase != MeasurementTerminated || st.Releases[0].Runs[0].Metrics[0].InFlight {
		t.Fatalf("superseded: %+v", st.Releases)
	}
}

func TestThinHistoryKeepsTheWholeRelease(t *testing.T) {
	var h []WeightPoint
	for i := 0; i < 1000; i++ {
		h = thinHistory(append(h, WeightPoint{Time: t0.Add(time.Duration(i) * time.Second), SetWeight: i % 100}))
		if len(h) > maxHistory {
			t.Fatalf("%d points", len(h))
		}
	}
	if !h[0].Time.Equal(t0) || !h[len(h)-1].Time.Equal(t0.Add(999*time.Second)) {
		t.Fatalf("span %s … %s", h[0].Time, h[len(h)-1].Time)
	}
}

// A schema-1 state kept the history of earlier releases in History; loading it keeps
// the current release's part, starting with the weight in effect when it started.
func TestMigrateSchema1History(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("testdata", "rollout-schema1.json"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "rollout-app.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	loaded, err := (&FileStore{Dir: dir}).Load()
	if err != nil {
		t.Fatal(err)
	}
	st := loaded["app"]
	if st == nil || st.Schema != SchemaVersion {
		t.Fatalf("%+v", st)
	}
	got, _ := json.Marshal(st.History)
	want := `[{"time":"2026-01-02T04:00:00Z","setWeight":0,"actualWeight":0},{"time":"2026-01-02T04:00:05Z","setWeight":20,"actualWeight":20}]`
	if string(got) != want {
		t.Fatalf("history %s\nwant    %s", got, want)
	}
	if len(st.Releases) != 0 || st.HealthWaitSince != nil {
		t.Fatalf("new fields: %+v %v", st.Releases, st.HealthWaitSince)
	}
}

func TestTrafficWindow(t *testing.T) {
	prom := func(q string, interval time.Duration) model.Metric {
		return model.Metric{Interval: interval, Provider: model.Provider{Prometheus: &model.PrometheusProvider{Query: q}}}
	}
	for _, c := range []struct {
		m    model.Metric
		want time.Duration
	}{
		{prom(`sum(rate(http_errors_total{cluster="c"}[2m])) / sum(rate(http_requests_total{cluster="c"}[1m]))`, 30*time.Second), 2 * time.Minute},
		{prom(`max_over_time(rate(http_requests_total[1m])[5m:30s])`, 0), 5 * time.Minute},
		{prom(`sum(http_requests_total)`, 30*time.Second), 30 * time.Second},
		{prom(`sum(http_requests_total)`, 0), time.Minute},
		{prom(`sum(rate(http_requests_total[2s]))`, 0), 10 * time.Second},
		{prom(`not promql (`, 20*time.Second), 20 * time.Second},
		{model.Metric{Interval: 45 * time.Second}, 45 * time.Second},
	} {
		if got := TrafficWindow(c.m); got != c.want {
			q := ""
			if c.m.Provider.Prometheus != nil {
				q = c.m.Provider.Prometheus.Query
			}
			t.Errorf("%q every %s: %s, want %s", q, c.m.Interval, got, c.want)
		}
	}
}
