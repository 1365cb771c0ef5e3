package analyzer

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sluice-mesh/sluice/internal/testenv"
	"github.com/sluice-mesh/sluice/model"
)

// fakeClock is an injected clock advanced by the test.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	waiters []fakeWaiter
}

type fakeWaiter struct {
	at time.Time
	ch chan time.Time
}

func (f *fakeClock) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *fakeClock) After(d time.Duration) <-chan time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	ch := make(chan time.Time, 1)
	if d <= 0 {
		ch <- f.now
		return ch
	}
	f.waiters = append(f.waiters, fakeWaiter{f.now.Add(d), ch})
	return ch
}

func (f *fakeClock) Advance(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.now = f.now.Add(d)
	var keep []fakeWaiter
	for _, w := range f.waiters {
		if !w.at.After(f.now) {
			w.ch <- f.now
		} else {
			keep = append(keep, w)
		}
	}
	f.waiters = keep
}

// fakePlane records snapshots; nack makes WaitApplied fail.
type fakePlane struct {
	mu    sync.Mutex
	snaps []*model.Snapshot
	nack  error
}

func (p *fakePlane) Apply(s *model.Snapshot) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.snaps = append(p.snaps, s)
	return nil
}

func (p *fakePlane) WaitApplied(ctx context.Context, v uint64) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.nack
}

func (p *fakePlane) canaryWeight() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.snaps) == 0 {
		return -1
	}
	s := p.snaps[len(p.snaps)-1]
	return s.Listeners[0].Routes[0].WeightOf("canary")
}

// fakeMeasurer answers with the phase set for each metric name (default Successful).
type fakeMeasurer struct {
	mu     sync.Mutex
	phases map[string]MeasurementPhase
	count  int
}

func (f *fakeMeasurer) set(metric string, p MeasurementPhase) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.phases[metric] = p
}

func (f *fakeMeasurer) Measure(ctx context.Context, req MeasureRequest) Measurement {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.count++
	p := f.phases[req.Metric.Name]
	if p == "" {
		p = MeasurementSuccessful
	}
	return Measurement{Phase: p, Value: "[0.01]", StartedAt: req.Now, FinishedAt: req.Now}
}

func testConfig(steps ...model.Step) *model.Config {
	return &model.Config{
		Clusters: []model.Cluster{{Name: "canary"}, {Name: "stable"}, {Name: "other"}},
		Listeners: []model.Listener{{Name: "ing", Address: "127.0.0.1:0", Routes: []model.Route{
			{Name: "ing-0", Hosts: []string{"*"}, PathPrefix: "/", Cluster: "stable"},
			{Name: "ing-1", Hosts: []string{"*"}, PathPrefix: "/x", Cluster: "other"},
		}}},
		Rollouts: []model.Rollout{*canary(steps...)},
	}
}

type harness struct {
	t     *testing.T
	c     *Controller
	clock *fakeClock
	plane *fakePlane
	meas  *fakeMeasurer
	reg   *prometheus.Registry
	stop  func()
}

func startController(t *testing.T, cfg *model.Config, store Store, clock *fakeClock) *harness {
	t.Helper()
	h := &harness{t: t, clock: clock, plane: &fakePlane{}, meas: &fakeMeasurer{phases: map[string]MeasurementPhase{}},
		reg: prometheus.NewRegistry()}
	c, err := NewController(cfg, Options{Registerer: h.reg, Clock: clock, DataPlanes: []DataPlane{h.plane},
		Store: store, Measurer: h.meas})
	if err != nil {
		t.Fatal(err)
	}
	h.c = c
	h.stop = runCtx(t, c)
	return h
}

// runCtx runs c until the returned stop is called or the test ends.
func runCtx(t *testing.T, c *Controller) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = c.Run(ctx); close(done) }()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return stop
}

func (h *harness) waitStatus(msg string, ok func(RolloutStatus) bool) RolloutStatus {
	h.t.Helper()
	var st RolloutStatus
	testenv.WaitFor(h.t, 5*time.Second, msg, func() bool {
		h.c.poke() // the loop may wait on a fake timer armed before the last Advance
		st, _ = h.c.Get("app")
		return ok(st)
	})
	return st
}

// waitPlane waits until the data plane was handed canary weight w (the publisher
// applies snapshots on its own goroutine).
func (h *harness) waitPlane(w int) {
	h.t.Helper()
	testenv.WaitFor(h.t, 5*time.Second, fmt.Sprintf("data plane canary weight %d", w), func() bool {
		return h.plane.canaryWeight() == w
	})
}

func at(phase Phase, step, weight int) func(RolloutStatus) bool {
	return func(s RolloutStatus) bool {
		return s.Phase == phase && s.Step == step && s.SetWeight == weight && s.ActualWeight == weight
	}
}

func TestControllerWalksStepsToHealthy(t *testing.T) {
	m := metric("errors", func(m *model.Metric) { m.Interval = 10 * time.Second; m.Count = 2 })
	cfg := testConfig(weightStep(20), analysisStep(m), pauseStep(time.Minute), weightStep(50))
	clock := &fakeClock{now: t0}
	h := startController(t, cfg, &MemStore{}, clock)
	h.waitStatus("first measurement", func(s RolloutStatus) bool {
		return s.Step == 1 && len(s.AnalysisRuns) == 1 && s.AnalysisRuns[0].Metrics[0].Count == 1
	})
	h.waitPlane(20)
	clock.Advance(10 * time.Second)
	h.waitStatus("paused after analysis", at(PhasePaused, 2, 20))
	clock.Advance(time.Minute)
	st := h.waitStatus("healthy", at(PhaseHealthy, 4, 100))
	h.waitPlane(100)
	snap := h.c.Snapshot()
	rt := snap.Listeners[0].Routes[0]
	if rt.Rollout != "app" || rt.InternalCluster != "" || snap.Listeners[0].Routes[1].Rollout != "" {
		t.Fatalf("snapshot route %+v", rt)
	}
	if got := testutil.ToFloat64(h.c.metrics.phase.WithLabelValues("app", "Healthy")); got != 1 {
		t.Fatalf("phase metric %v", got)
	}
	if got := testutil.ToFloat64(h.c.metrics.measurements.WithLabelValues("app", "errors", "Successful")); got != 2 {
		t.Fatalf("measurements metric %v", got)
	}
	if len(st.History) < 3 {
		t.Fatalf("history %+v", st.History)
	}
	// Completed: a new release swaps roles.
	if err := h.c.Promote("app", false); !errors.Is(err, ErrIsCompleted) {
		t.Fatalf("promote after completion: %v", err)
	}
	if err := h.c.Start("app"); err != nil {
		t.Fatal(err)
	}
	st = h.waitStatus("new release", func(s RolloutStatus) bool { return s.StableService == "canary" && s.Step == 1 })
	rt = h.c.Snapshot().Listeners[0].Routes[0]
	if rt.WeightOf("canary") != 80 || rt.WeightOf("stable") != 20 {
		t.Fatalf("after swap %+v (status %+v)", rt.Split, st)
	}
}

func TestControllerAbortsOnFailedAnalysis(t *testing.T) {
	m := metric("errors", func(m *model.Metric) { m.Interval = 10 * time.Second; m.Count = 3 })
	cfg := testConfig(weightStep(20), analysisStep(m), weightStep(50))
	clock := &fakeClock{now: t0}
	h := startController(t, cfg, &MemStore{}, clock)
	h.waitStatus("measuring", func(s RolloutStatus) bool { return s.Step == 1 && s.ActualWeight == 20 })
	h.meas.set("errors", MeasurementFailed)
	clock.Advance(10 * time.Second)
	st := h.waitStatus("aborted", func(s RolloutStatus) bool { return s.Aborted && s.ActualWeight == 0 && s.AbortLatencySeconds != nil })
	if st.Phase != PhaseDegraded || !strings.Contains(st.Message, "errors") {
		t.Fatalf("%+v", st)
	}
	h.waitPlane(0)
	if n := testutil.CollectAndCount(h.c.metrics.abortLatency); n != 1 {
		t.Fatalf("histogram series %d", n)
	}
	if rt := h.c.Snapshot().Listeners[0].Routes[0]; rt.InternalCluster != "" || len(rt.HeaderRoutes) != 0 {
		t.Fatalf("aborted route still points at canary: %+v", rt)
	}
	// Retry starts over from step 0.
	h.meas.set("errors", MeasurementSuccessful)
	if err := h.c.Retry("app"); err != nil {
		t.Fatal(err)
	}
	h.waitStatus("retried", func(s RolloutStatus) bool { return !s.Aborted && s.Step == 1 && s.ActualWeight == 20 })
}

func TestControllerNACKAborts(t *testing.T) {
	cfg := testConfig(weightStep(20), pauseStep(time.Minute), weightStep(40))
	clock := &fakeClock{now: t0}
	h := startController(t, cfg, &MemStore{}, clock)
	h.waitStatus("paused", at(PhasePaused, 1, 20))
	h.plane.mu.Lock()
	h.plane.nack = errors.New("node envoy-1 NACKed version 4: unknown cluster")
	h.plane.mu.Unlock()
	clock.Advance(time.Minute)
	st := h.waitStatus("aborted", func(s RolloutStatus) bool { return s.Aborted })
	if !strings.Contains(st.Message, "unknown cluster") {
		t.Fatalf("message %q", st.Message)
	}
}

func TestControllerRestartResumesInProcess(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(weightStep(30), pauseStep(10*time.Minute), weightStep(60))
	clock := &fakeClock{now: t0}
	store, err := NewFileStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	h := startController(t, cfg, store, clock)
	h.waitStatus("paused", at(PhasePaused, 1, 30))
	clock.Advance(4 * time.Minute)
	h.stop()

	clock.Advance(time.Minute) // down for a minute
	store2, _ := NewFileStore(dir)
	h2 := startController(t, cfg, store2, clock)
	st := h2.waitStatus("resumed", at(PhasePaused, 1, 30))
	if st.PauseEndsAt == nil || !st.PauseEndsAt.Equal(t0.Add(10*time.Minute)) {
		t.Fatalf("pause deadline %v", st.PauseEndsAt)
	}
	h2.waitPlane(30)
	clock.Advance(5 * time.Minute)
	h2.waitStatus("healthy", at(PhaseHealthy, 3, 100))

	// Aborted stays aborted across a restart.
	if err := h2.c.Start("app"); err != nil {
		t.Fatal(err)
	}
	h2.waitStatus("new release", func(s RolloutStatus) bool { return s.Step == 1 })
	if err := h2.c.Abort("app"); err != nil {
		t.Fatal(err)
	}
	h2.waitStatus("aborted", func(s RolloutStatus) bool { return s.Aborted && s.ActualWeight == 0 })
	h2.stop()
	store3, _ := NewFileStore(dir)
	h3 := startController(t, cfg, store3, clock)
	st = h3.waitStatus("still aborted", func(s RolloutStatus) bool { return s.Aborted && s.ActualWeight == 0 })
	if st.StableService != "canary" {
		t.Fatalf("%+v", st)
	}
	if rt := h3.c.Snapshot().Listeners[0].Routes[0]; rt.WeightOf("canary") != 100 {
		t.Fatalf("aborted second release must keep the first release's winner at 100%%: %+v", rt.Split)
	}
}

func TestControllerReloadKeepsState(t *testing.T) {
	cfg := testConfig(weightStep(30), model.Step{Pause: &model.Pause{}})
	clock := &fakeClock{now: t0}
	h := startController(t, cfg, &MemStore{}, clock)
	h.waitStatus("paused", at(PhasePaused, 1, 30))
	cfg2 := testConfig(weightStep(30), model.Step{Pause: &model.Pause{}})
	if err := h.c.Reload(cfg2); err != nil {
		t.Fatal(err)
	}
	h.waitStatus("unchanged", at(PhasePaused, 1, 30))
	cfg3 := testConfig(weightStep(10), model.Step{Pause: &model.Pause{}})
	cfg3.Rollouts[0].Revision = "r2"
	if err := h.c.Reload(cfg3); err != nil {
		t.Fatal(err)
	}
	st := h.waitStatus("new revision restarts", at(PhasePaused, 1, 10))
	if st.Revision != "r2" || st.StableService != "stable" {
		t.Fatalf("%+v", st)
	}
	if err := h.c.Promote("nope", false); !errors.Is(err, ErrUnknownRollout) {
		t.Fatal(err)
	}
}
