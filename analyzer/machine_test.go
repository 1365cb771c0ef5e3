package analyzer

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/sluice-mesh/sluice/model"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func ip(n int) *int                        { return &n }
func dp(d time.Duration) *time.Duration    { return &d }
func weightStep(w int) model.Step          { return model.Step{SetWeight: ip(w)} }
func pauseStep(d time.Duration) model.Step { return model.Step{Pause: &model.Pause{Duration: dp(d)}} }

func metric(name string, mod func(*model.Metric)) model.Metric {
	m := model.Metric{Name: name, ConsecutiveErrorLimit: 4,
		Provider: model.Provider{Prometheus: &model.PrometheusProvider{Query: "q"}}}
	if mod != nil {
		mod(&m)
	}
	return m
}

func analysisStep(ms ...model.Metric) model.Step {
	return model.Step{Analysis: &model.AnalysisRef{Templates: []model.TemplateRef{{Name: "tmpl"}}, Metrics: ms}}
}

func canary(steps ...model.Step) *model.Rollout {
	return &model.Rollout{Name: "app", Revision: "r1", Strategy: model.StrategyCanary,
		Canary: &model.CanaryStrategy{StableService: "stable", CanaryService: "canary", Steps: steps}}
}

// driver runs the machine tick by tick with an injected clock.
type driver struct {
	t       *testing.T
	r       *model.Rollout
	st      State
	now     time.Time
	pending []*MeasureAction
	events  []string
	// autoApply: the data planes apply every routing change at once.
	autoApply bool
	// health is every tick's Inputs.Health (the data planes' current view).
	health map[string]ClusterHealth
	// eventMsgs are the events' messages, in order.
	eventMsgs []string
}

func newDriver(t *testing.T, r *model.Rollout) *driver {
	d := &driver{t: t, r: r, now: t0, autoApply: true}
	d.st = NewState(r, nil, t0)
	d.tick(Inputs{})
	return d
}

func (d *driver) tick(in Inputs) {
	d.t.Helper()
	for i := 0; i < 10; i++ {
		if in.Health == nil {
			in.Health = d.health
		}
		// Round-trip through JSON every tick: the state must survive persistence.
		b, err := json.Marshal(d.st)
		if err != nil {
			d.t.Fatal(err)
		}
		var st State
		if err := json.Unmarshal(b, &st); err != nil {
			d.t.Fatal(err)
		}
		var acts []Action
		d.st, acts = Step(d.r, st, d.now, in)
		for _, a := range acts {
			switch a := a.(type) {
			case *MeasureAction:
				d.pending = append(d.pending, a)
			case *Event:
				d.events = append(d.events, a.Type)
				d.eventMsgs = append(d.eventMsgs, a.Type+": "+a.Message)
			}
		}
		in = Inputs{}
		if !d.autoApply || d.st.AppliedGen == d.st.Gen {
			return
		}
		in.Applied = []Applied{{Gen: d.st.Gen, Weight: d.st.SetWeight, At: d.now}}
	}
}

func (d *driver) advance(dt time.Duration) { d.now = d.now.Add(dt); d.tick(Inputs{}) }

// answer answers every pending measurement with phase.
func (d *driver) answer(phase MeasurementPhase) int {
	d.t.Helper()
	var res []Result
	for _, a := range d.pending {
		res = append(res, Result{Run: a.Run, Metric: a.Metric.Name, Measurement: Measurement{
			Phase: phase, Value: "[1]", Message: "test", StartedAt: d.now, FinishedAt: d.now}})
	}
	n := len(d.pending)
	d.pending = nil
	d.tick(Inputs{Results: res})
	return n
}

func (d *driver) expect(phase Phase, step, weight int) {
	d.t.Helper()
	if d.st.Phase != phase || d.st.Step != step || d.st.SetWeight != weight {
		d.t.Fatalf("at %s: phase %s step %d weight %d (%s); want %s step %d weight %d",
			d.now.Sub(t0), d.st.Phase, d.st.Step, d.st.SetWeight, d.st.Message, phase, step, weight)
	}
}

func (d *driver) hasEvent(typ string) bool {
	for _, e := range d.events {
		if e == typ {
			return true
		}
	}
	return false
}

func TestCanaryWeightsAndTimedPause(t *testing.T) {
	d := newDriver(t, canary(weightStep(20), pauseStep(time.Minute), weightStep(50), pauseStep(30*time.Second)))
	d.expect(PhasePaused, 1, 20)
	if d.st.PauseUntil == nil || !d.st.PauseUntil.Equal(t0.Add(time.Minute)) {
		t.Fatalf("pause deadline %v", d.st.PauseUntil)
	}
	d.advance(59 * time.Second)
	d.expect(PhasePaused, 1, 20)
	d.advance(time.Second)
	d.expect(PhasePaused, 3, 50)
	d.advance(30 * time.Second)
	d.expect(PhaseHealthy, 4, 100)
	if !d.st.Completed || d.st.ActualWeight != 100 || !d.hasEvent(EventPromoted) {
		t.Fatalf("not completed: %+v", d.st)
	}
}

func TestWeightCountsOnlyWhenApplied(t *testing.T) {
	r := canary(weightStep(30), weightStep(60))
	d := &driver{t: t, r: r, now: t0}
	d.st = NewState(r, nil, t0)
	d.tick(Inputs{})
	// Initial routing not applied yet: nothing moves.
	d.expect(PhaseProgressing, 0, 0)
	d.tick(Inputs{Applied: []Applied{{Gen: d.st.Gen, Weight: 0, At: d.now}}})
	d.expect(PhaseProgressing, 0, 30)
	d.advance(time.Hour)
	d.expect(PhaseProgressing, 0, 30) // still waiting for the data plane
	if d.st.ActualWeight != 0 {
		t.Fatalf("actual %d", d.st.ActualWeight)
	}
	d.tick(Inputs{Applied: []Applied{{Gen: d.st.Gen, Weight: 30, At: d.now}}})
	d.expect(PhaseProgressing, 1, 60)
	if d.st.ActualWeight != 30 {
		t.Fatalf("actual %d", d.st.ActualWeight)
	}
	// A NACK aborts with the proxies' message; weight goes to 0.
	d.tick(Inputs{Applied: []Applied{{Gen: d.st.Gen, Err: errors.New("NACK from node n1: bad route"), At: d.now}}})
	d.expect(PhaseDegraded, 1, 0)
	if !d.st.Aborted || !strings.Contains(d.st.Message, "bad route") {
		t.Fatalf("%+v", d.st)
	}
	d.tick(Inputs{Applied: []Applied{{Gen: d.st.Gen, Weight: 0, At: d.now.Add(5 * time.Millisecond)}}})
	if d.st.AbortLatency == nil || *d.st.AbortLatency != 0.005 {
		t.Fatalf("abort latency %v", d.st.AbortLatency)
	}
}

func TestIndefinitePauseAndPromote(t *testing.T) {
	d := newDriver(t, canary(weightStep(10), model.Step{Pause: &model.Pause{}}, weightStep(40)))
	d.expect(PhasePaused, 1, 10)
	d.advance(24 * time.Hour)
	d.expect(PhasePaused, 1, 10)
	d.tick(Inputs{Commands: []CommandKind{CmdPromote}})
	d.expect(PhaseHealthy, 3, 100)
}

func TestPromoteFull(t *testing.T) {
	d := newDriver(t, canary(weightStep(10), pauseStep(time.Hour), weightStep(40), pauseStep(time.Hour)))
	d.expect(PhasePaused, 1, 10)
	d.tick(Inputs{Commands: []CommandKind{CmdPromoteFull}})
	d.expect(PhaseHealthy, 4, 100)
	if err := CheckCommand(&d.st, CmdPromote); !errors.Is(err, ErrIsCompleted) {
		t.Fatal(err)
	}
}

func TestHeaderAndMirrorRoutes(t *testing.T) {
	d := newDriver(t, canary(
		weightStep(5),
		model.Step{SetHeaderRoute: &model.SetHeaderRoute{Name: "h1", Match: []model.HeaderMatch{{Name: "x-canary", Value: model.StringMatch{Exact: "1"}}}}},
		model.Step{SetMirrorRoute: &model.SetMirrorRoute{Name: "m1", Match: []model.RequestMatch{{}}}},
		model.Step{Pause: &model.Pause{}},
		model.Step{SetHeaderRoute: &model.SetHeaderRoute{Name: "h1"}},
		model.Step{Pause: &model.Pause{}},
	))
	d.expect(PhasePaused, 3, 5)
	if len(d.st.HeaderRoutes) != 1 || d.st.HeaderRoutes[0].Cluster != "canary" || len(d.st.Mirrors) != 1 || d.st.Mirrors[0].Percentage != 100 {
		t.Fatalf("routes %+v %+v", d.st.HeaderRoutes, d.st.Mirrors)
	}
	d.tick(Inputs{Commands: []CommandKind{CmdPromote}})
	d.expect(PhasePaused, 5, 5)
	if len(d.st.HeaderRoutes) != 0 || len(d.st.Mirrors) != 1 {
		t.Fatalf("routes %+v %+v", d.st.HeaderRoutes, d.st.Mirrors)
	}
	d.tick(Inputs{Commands: []CommandKind{CmdAbort}})
	d.expect(PhaseDegraded, 5, 0)
	if len(d.st.Mirrors) != 0 || d.st.AbortLatency == nil {
		t.Fatalf("abort kept mirrors or no latency: %+v", d.st)
	}
}

func TestInlineAnalysisSuccessfulWithCount(t *testing.T) {
	m := metric("err", func(m *model.Metric) { m.Interval = time.Minute; m.Count = 3; m.InitialDelay = 30 * time.Second })
	d := newDriver(t, canary(weightStep(20), analysisStep(m), weightStep(50)))
	d.expect(PhaseProgressing, 1, 20)
	if len(d.pending) != 0 {
		t.Fatal("measured before initialDelay")
	}
	d.advance(30 * time.Second)
	for i := 0; i < 3; i++ {
		if n := d.answer(MeasurementSuccessful); n != 1 {
			t.Fatalf("measurement %d: %d pending", i, n)
		}
		if i < 2 {
			d.expect(PhaseProgressing, 1, 20)
			d.advance(59 * time.Second)
			if len(d.pending) != 0 {
				t.Fatal("measured before interval")
			}
			d.advance(time.Second)
		}
	}
	d.expect(PhaseHealthy, 3, 100)
}

func TestSingleMeasurementWithoutIntervalOrCount(t *testing.T) {
	d := newDriver(t, canary(weightStep(20), analysisStep(metric("m", nil)), weightStep(40)))
	d.answer(MeasurementSuccessful)
	d.expect(PhaseHealthy, 3, 100)
}

func TestFailureLimit(t *testing.T) {
	m := metric("err", func(m *model.Metric) { m.Interval = 10 * time.Second; m.Count = 5; m.FailureLimit = 1 })
	d := newDriver(t, canary(weightStep(20), analysisStep(m)))
	d.answer(MeasurementFailed)
	d.expect(PhaseProgressing, 1, 20) // one failure allowed
	d.advance(10 * time.Second)
	d.now = d.now.Add(200 * time.Millisecond)
	d.answer(MeasurementFailed)
	d.expect(PhaseDegraded, 1, 0)
	if !d.hasEvent(EventAnalysisFailed) || !d.hasEvent(EventAborted) {
		t.Fatalf("events %v", d.events)
	}
	// The latency counts from the failing measurement to the zero weight applied.
	if d.st.AbortLatency == nil || *d.st.AbortLatency != 0 {
		t.Fatalf("latency %v", d.st.AbortLatency)
	}
}

func TestFailureLimitDisabled(t *testing.T) {
	m := metric("err", func(m *model.Metric) { m.Interval = 10 * time.Second; m.Count = 3; m.FailureLimit = -1 })
	d := newDriver(t, canary(weightStep(20), analysisStep(m)))
	for i := 0; i < 3; i++ {
		d.answer(MeasurementFailed)
		d.advance(10 * time.Second)
	}
	d.expect(PhaseHealthy, 2, 100)
}

func TestInconclusiveLimitPausesThenPromote(t *testing.T) {
	m := metric("err", func(m *model.Metric) { m.Interval = 10 * time.Second; m.Count = 5; m.InconclusiveLimit = 1 })
	d := newDriver(t, canary(weightStep(20), analysisStep(m), weightStep(50), model.Step{Pause: &model.Pause{}}))
	d.answer(MeasurementInconclusive)
	d.expect(PhaseProgressing, 1, 20)
	d.advance(10 * time.Second)
	d.answer(MeasurementInconclusive)
	d.expect(PhasePaused, 1, 20)
	if !d.hasEvent(EventPaused) || d.st.Aborted {
		t.Fatal("inconclusive must pause, not abort")
	}
	d.tick(Inputs{Commands: []CommandKind{CmdPromote}})
	d.expect(PhasePaused, 3, 50)
}

func TestConsecutiveErrorLimitRetriesEvery10s(t *testing.T) {
	m := metric("err", func(m *model.Metric) { m.Interval = time.Minute; m.Count = 2; m.ConsecutiveErrorLimit = 2 })
	d := newDriver(t, canary(weightStep(20), analysisStep(m)))
	d.answer(MeasurementError)
	d.advance(9 * time.Second)
	if len(d.pending) != 0 {
		t.Fatal("retried before 10s")
	}
	d.advance(time.Second)
	d.answer(MeasurementError) // 2 consecutive: limit 2 not exceeded
	d.expect(PhaseProgressing, 1, 20)
	d.advance(10 * time.Second)
	d.answer(MeasurementSuccessful) // resets the streak; errors don't count toward count
	d.advance(time.Minute)
	d.answer(MeasurementError)
	d.advance(10 * time.Second)
	d.answer(MeasurementError)
	d.advance(10 * time.Second)
	d.answer(MeasurementError)
	d.expect(PhaseDegraded, 1, 0)
	r := d.st.Runs[0]
	if r.Phase != MeasurementError || r.Metrics[0].Error != 5 || r.Metrics[0].Count != 1 {
		t.Fatalf("run %+v", r)
	}
}

func TestLowTrafficAndRunningDoNotCount(t *testing.T) {
	m := metric("err", func(m *model.Metric) { m.Interval = 5 * time.Second; m.Count = 1 })
	d := newDriver(t, canary(weightStep(20), analysisStep(m)))
	for i := 0; i < 5; i++ {
		d.answer(MeasurementLowTraffic)
		d.answer(MeasurementRunning) // nothing pending: no-op
		d.advance(5 * time.Second)
	}
	d.answer(MeasurementRunning)
	d.expect(PhaseProgressing, 1, 20)
	mr := d.st.Runs[0].Metrics[0]
	if mr.Count != 0 || mr.LowTraffic != 5 || mr.Phase != MeasurementRunning {
		t.Fatalf("%+v", mr)
	}
	d.advance(5 * time.Second)
	d.answer(MeasurementSuccessful)
	d.expect(PhaseHealthy, 2, 100)
}

func TestDryRunNeverDecides(t *testing.T) {
	dry := metric("dry", func(m *model.Metric) { m.DryRun = true })
	real := metric("real", func(m *model.Metric) { m.Interval = 10 * time.Second; m.Count = 2 })
	d := newDriver(t, canary(weightStep(20), analysisStep(dry, real)))
	var res []Result
	for _, a := range d.pending {
		ph := MeasurementSuccessful
		if a.Metric.Name == "dry" {
			ph = MeasurementFailed
		}
		res = append(res, Result{Run: a.Run, Metric: a.Metric.Name, Measurement: Measurement{Phase: ph, FinishedAt: d.now}})
	}
	d.pending = nil
	d.tick(Inputs{Results: res})
	d.expect(PhaseProgressing, 1, 20)
	if d.st.Runs[0].Metrics[0].Phase != MeasurementFailed {
		t.Fatalf("dry-run metric not shown as failed: %+v", d.st.Runs[0].Metrics[0])
	}
	d.advance(10 * time.Second)
	d.answer(MeasurementSuccessful)
	d.expect(PhaseHealthy, 2, 100)
}

func TestBackgroundAnalysisStartingStep(t *testing.T) {
	r := canary(weightStep(10), pauseStep(time.Minute), weightStep(30), pauseStep(time.Hour))
	r.Canary.Analysis = &model.BackgroundAnalysis{StartingStep: 2, AnalysisRef: model.AnalysisRef{
		Metrics: []model.Metric{metric("bg", func(m *model.Metric) { m.Interval = 30 * time.Second })}}}
	d := newDriver(t, r)
	if len(d.st.Runs) != 0 {
		t.Fatal("background started before its step")
	}
	d.advance(time.Minute)
	d.expect(PhasePaused, 3, 30)
	if len(d.st.Runs) != 1 || d.st.Runs[0].Kind != KindBackground || len(d.pending) != 1 {
		t.Fatalf("runs %+v pending %d", d.st.Runs, len(d.pending))
	}
	d.answer(MeasurementSuccessful)
	d.advance(30 * time.Second)
	d.answer(MeasurementFailed) // failureLimit 0: aborts even during a pause
	d.expect(PhaseDegraded, 3, 0)
	if err := CheckCommand(&d.st, CmdPromote); !errors.Is(err, ErrIsAborted) {
		t.Fatal(err)
	}
	// Retry starts again from step 0.
	d.tick(Inputs{Commands: []CommandKind{CmdRetry}})
	d.expect(PhasePaused, 1, 10)
	if d.st.Aborted || len(d.st.Runs) != 0 {
		t.Fatalf("%+v", d.st)
	}
}

func TestBackgroundRunsUntilCompletion(t *testing.T) {
	r := canary(weightStep(10), pauseStep(time.Minute))
	r.Canary.Analysis = &model.BackgroundAnalysis{AnalysisRef: model.AnalysisRef{
		Metrics: []model.Metric{metric("bg", func(m *model.Metric) { m.Interval = 20 * time.Second })}}}
	d := newDriver(t, r)
	for i := 0; i < 3; i++ {
		d.answer(MeasurementSuccessful)
		d.advance(20 * time.Second)
	}
	d.expect(PhaseHealthy, 2, 100)
	if !d.st.Runs[0].Done || d.st.Runs[0].Phase != MeasurementSuccessful {
		t.Fatalf("%+v", d.st.Runs[0])
	}
}

func TestRestartResumesPause(t *testing.T) {
	r := canary(weightStep(25), pauseStep(10*time.Minute), weightStep(75))
	d := newDriver(t, r)
	d.advance(4 * time.Minute)
	b, _ := json.Marshal(d.st)
	// "Restart": a fresh machine from the persisted bytes, 3 minutes later.
	var st State
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	d2 := &driver{t: t, r: r, st: st, now: d.now.Add(3 * time.Minute), autoApply: true}
	d2.tick(Inputs{})
	d2.expect(PhasePaused, 1, 25)
	d2.advance(2*time.Minute + 59*time.Second)
	d2.expect(PhasePaused, 1, 25)
	d2.advance(time.Second)
	d2.expect(PhaseHealthy, 3, 100)
}

func blueGreen(mod func(*model.BlueGreenStrategy)) *model.Rollout {
	bg := &model.BlueGreenStrategy{ActiveService: "blue", PreviewService: "green", AutoPromotionEnabled: true,
		ScaleDownDelaySeconds: 30, PreviewHeader: []model.HeaderMatch{{Name: "x-preview", Value: model.StringMatch{Exact: "1"}}}}
	if mod != nil {
		mod(bg)
	}
	return &model.Rollout{Name: "bg", Revision: "r1", Strategy: model.StrategyBlueGreen, BlueGreen: bg}
}

func TestBlueGreenPrePostAndScaleDownDelay(t *testing.T) {
	r := blueGreen(func(bg *model.BlueGreenStrategy) {
		bg.AutoPromotionSeconds = 20
		bg.PrePromotionAnalysis = &model.AnalysisRef{Metrics: []model.Metric{metric("pre", nil)}}
		bg.PostPromotionAnalysis = &model.AnalysisRef{Metrics: []model.Metric{metric("post", nil)}}
	})
	d := newDriver(t, r)
	d.expect(PhaseProgressing, 0, 0)
	if len(d.st.HeaderRoutes) != 1 || d.st.HeaderRoutes[0].Cluster != "green" {
		t.Fatalf("preview route %+v", d.st.HeaderRoutes)
	}
	d.answer(MeasurementSuccessful)
	d.expect(PhasePaused, 0, 0) // auto promotion in 20 s
	d.advance(20 * time.Second)
	d.expect(PhaseProgressing, 1, 100) // one atomic 0→100 change
	if len(d.st.HeaderRoutes) != 0 {
		t.Fatal("preview route kept after switch")
	}
	d.answer(MeasurementSuccessful)
	d.expect(PhaseProgressing, 1, 100) // within scaleDownDelay
	d.advance(30 * time.Second)
	d.expect(PhaseHealthy, 1, 100)
}

func TestBlueGreenPostPromotionFailureSwitchesBack(t *testing.T) {
	r := blueGreen(func(bg *model.BlueGreenStrategy) {
		bg.PostPromotionAnalysis = &model.AnalysisRef{Metrics: []model.Metric{metric("post", nil)}}
	})
	d := newDriver(t, r)
	d.expect(PhaseProgressing, 1, 100)
	d.answer(MeasurementFailed)
	d.expect(PhaseDegraded, 1, 0)
}

func TestBlueGreenManualPromotion(t *testing.T) {
	d := newDriver(t, blueGreen(func(bg *model.BlueGreenStrategy) { bg.AutoPromotionEnabled = false }))
	d.advance(time.Hour)
	d.expect(PhasePaused, 0, 0)
	d.tick(Inputs{Commands: []CommandKind{CmdPromote}})
	d.expect(PhaseProgressing, 1, 100)
	d.advance(30 * time.Second)
	d.expect(PhaseHealthy, 1, 100)
}

func TestNewReleaseSwapsRoles(t *testing.T) {
	r := canary(weightStep(50))
	d := newDriver(t, r)
	d.expect(PhaseHealthy, 1, 100)
	if err := CheckCommand(&d.st, CmdStart); err != nil {
		t.Fatal(err)
	}
	d.tick(Inputs{Commands: []CommandKind{CmdStart}})
	if d.st.Stable != "canary" || d.st.Canary != "stable" {
		t.Fatalf("roles %s/%s", d.st.Stable, d.st.Canary)
	}
	d.expect(PhaseHealthy, 1, 100)
	if d.st.Stable != "canary" {
		t.Fatal("roles")
	}
}

func TestBackgroundInconclusivePausesAndPromoteRestartsIt(t *testing.T) {
	r := canary(weightStep(10), pauseStep(time.Hour), pauseStep(time.Hour))
	r.Canary.Analysis = &model.BackgroundAnalysis{AnalysisRef: model.AnalysisRef{
		Metrics: []model.Metric{metric("bg", func(m *model.Metric) { m.Interval = 20 * time.Second })}}}
	d := newDriver(t, r)
	d.answer(MeasurementInconclusive) // inconclusiveLimit 0
	d.expect(PhasePaused, 1, 10)
	if !d.st.Paused || d.st.Aborted {
		t.Fatalf("%+v", d.st)
	}
	d.tick(Inputs{Commands: []CommandKind{CmdPromote}})
	if len(d.st.Runs) != 2 || !d.st.Runs[0].Acknowledged || d.st.Runs[1].Done || len(d.pending) != 1 {
		t.Fatalf("runs %+v pending %d", d.st.Runs, len(d.pending))
	}
	d.expect(PhasePaused, 2, 10) // promote also skipped the first pause
	d.answer(MeasurementSuccessful)
	d.tick(Inputs{Commands: []CommandKind{CmdPromote}})
	d.expect(PhaseHealthy, 3, 100)
	if r := d.st.Runs[1]; !r.Done || r.Phase != MeasurementSuccessful {
		t.Fatalf("background run not ended with the rollout: %+v", r)
	}
}

func TestPromoteSkipsRunningInlineAnalysisAndIgnoredSteps(t *testing.T) {
	m := metric("m", func(m *model.Metric) { m.Interval = time.Minute; m.Count = 10 })
	d := newDriver(t, canary(weightStep(10), model.Step{Ignored: true}, analysisStep(m), weightStep(30), model.Step{Pause: &model.Pause{}}))
	d.expect(PhaseProgressing, 2, 10)
	d.tick(Inputs{Commands: []CommandKind{CmdPromote}})
	d.expect(PhasePaused, 4, 30)
	if !d.st.Runs[0].Done {
		t.Fatal("skipped run still measuring")
	}
	// A late result of the skipped run changes nothing.
	d.answer(MeasurementFailed)
	d.expect(PhasePaused, 4, 30)
}

func TestBlueGreenPrePromotionFailureAborts(t *testing.T) {
	r := blueGreen(func(bg *model.BlueGreenStrategy) {
		bg.PrePromotionAnalysis = &model.AnalysisRef{Metrics: []model.Metric{metric("pre", nil)}}
	})
	d := newDriver(t, r)
	d.answer(MeasurementError)
	d.advance(ErrorRetryInterval)
	d.expect(PhaseProgressing, 0, 0)
	d.answer(MeasurementFailed)
	d.expect(PhaseDegraded, 0, 0)
	if d.st.Switched || len(d.st.HeaderRoutes) != 0 {
		t.Fatalf("%+v", d.st)
	}
}

func TestBuildSnapshotAbortAndOwnership(t *testing.T) {
	cfg := testConfig(weightStep(10))
	cfg.Listeners = append(cfg.Listeners, model.Listener{Name: "other-ing", Routes: []model.Route{{Name: "o", Cluster: "stable"}}})
	cfg.Rollouts[0].Canary.StableIngress = "ing"
	cfg.Rollouts[0].Canary.ManagedRoutes = []string{"b", "a"}
	st := NewState(&cfg.Rollouts[0], nil, t0)
	st.SetWeight = 25
	st.HeaderRoutes = []model.HeaderRoute{{Name: "a", Cluster: "canary"}, {Name: "b", Cluster: "canary"}}
	st.Mirrors = []model.Mirror{{Name: "m", Cluster: "canary", Percentage: 100}}
	snap := BuildSnapshot(cfg, map[string]*State{"app": &st})
	rt := snap.Listeners[0].Routes[0]
	if rt.Rollout != "app" || rt.WeightOf("canary") != 25 || rt.WeightOf("stable") != 75 || rt.InternalCluster != "canary" ||
		len(rt.HeaderRoutes) != 2 || rt.HeaderRoutes[0].Name != "b" || len(rt.Mirrors) != 1 {
		t.Fatalf("route %+v", rt)
	}
	if o := snap.Listeners[1].Routes[0]; o.Rollout != "" || o.Split != nil {
		t.Fatalf("route on another ingress taken: %+v", o)
	}
	if cfg.Listeners[0].Routes[0].Split != nil {
		t.Fatal("BuildSnapshot modified the config")
	}
	st.Aborted, st.SetWeight = true, 0
	rt = BuildSnapshot(cfg, map[string]*State{"app": &st}).Listeners[0].Routes[0]
	if rt.WeightOf("canary") != 0 || len(rt.HeaderRoutes)+len(rt.Mirrors) != 0 || rt.InternalCluster != "" {
		t.Fatalf("aborted route %+v", rt)
	}
}
