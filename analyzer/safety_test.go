package analyzer

import (
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/sluice-mesh/sluice/analyzer/embedded"
	"github.com/sluice-mesh/sluice/internal/testenv"
	"github.com/sluice-mesh/sluice/model"
)

// zeroTrafficNaN starts a controller whose analysis runs the seed's error ratio over the
// embedded store with no traffic at all: 0/0, NaN, at every measurement.
func zeroTrafficNaN(t *testing.T, success, failure string, store Store) (*harness, *embedded.Store) {
	t.Helper()
	reg := prometheus.NewRegistry()
	newTraffic(reg) // the series exist, and never move
	clock := &fakeClock{now: t0}
	es, err := embedded.New(embedded.Options{Gatherer: reg, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 35; i++ {
		clock.Advance(time.Second)
		if err := es.Collect(clock.Now()); err != nil {
			t.Fatal(err)
		}
	}
	m := model.Metric{Name: "error-rate", Interval: 10 * time.Second, Count: 3, ConsecutiveErrorLimit: 4,
		SuccessCondition: success, FailureCondition: failure,
		Provider: model.Provider{Prometheus: &model.PrometheusProvider{
			Query: `sum(rate(http_errors_total{cluster="canary"}[30s])) / sum(rate(http_requests_total{cluster="canary"}[30s]))`}}}
	cfg := testConfig(weightStep(20), analysisStep(m), weightStep(50))
	plane := &fakePlane{}
	c, err := NewController(cfg, Options{Clock: clock, DataPlanes: []DataPlane{plane}, Embedded: es, Store: store})
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, c: c, clock: clock, plane: plane}
	h.stop = runCtx(t, c)
	return h, es
}

// TestNaNAtZeroTrafficDecidesAndIsSaved is the case: the error ratio is 0/0 =
// NaN at zero traffic. With only a successCondition, `NaN < 0.5` is false in expr, so
// the measurement is Failed and the rollout aborts (Argo's decision); the state, NaN
// included, is saved and loads back.
func TestNaNAtZeroTrafficDecidesAndIsSaved(t *testing.T) {
	dir := t.TempDir()
	fs, err := NewFileStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	h, _ := zeroTrafficNaN(t, "result[0] < 0.5", "", fs)
	st := h.waitStatus("aborted on NaN", func(s RolloutStatus) bool { return s.Aborted && s.ActualWeight == 0 })
	ms := st.AnalysisRuns[0].Metrics[0].Measurements[0]
	if ms.Phase != MeasurementFailed || len(ms.Values) != 1 || !math.IsNaN(ms.Values[0]) || ms.Value != "[NaN]" {
		t.Fatalf("measurement %+v", ms)
	}
	h.waitPlane(0)
	// The event and the rollout's message say which value failed.
	if !strings.Contains(st.Message, "last value [NaN]") {
		t.Fatalf("message %q", st.Message)
	}
	b, err := os.ReadFile(filepath.Join(dir, "rollout-app.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"NaN"`) || !strings.Contains(string(b), `"aborted": true`) {
		t.Fatalf("saved state lacks the NaN or the abort:\n%s", b)
	}
	loaded, err := fs.Load()
	if err != nil {
		t.Fatal(err)
	}
	got := loaded["app"].Runs[0].Metrics[0].Measurements[0].Values
	if len(got) != 1 || !math.IsNaN(got[0]) || loaded["app"].Schema != SchemaVersion {
		t.Fatalf("loaded values %v schema %d", got, loaded["app"].Schema)
	}
	// The status JSON carries it too, as a string.
	js, err := json.Marshal(st)
	if err != nil || !strings.Contains(string(js), `"values":["NaN"]`) {
		t.Fatalf("status JSON %v: %s", err, js)
	}
}

// TestNaNInconclusiveDoesNotFreeze: with both conditions NaN meets neither, so the
// measurement is Inconclusive and the rollout pauses; the operator's abort works (it
// used to print "aborted" while nothing changed).
func TestNaNInconclusiveDoesNotFreeze(t *testing.T) {
	h, _ := zeroTrafficNaN(t, "result[0] < 0.5", "result[0] >= 0.5", &MemStore{})
	st := h.waitStatus("paused on an inconclusive NaN", func(s RolloutStatus) bool { return s.Phase == PhasePaused })
	if st.Step != 1 || st.AnalysisRuns[0].Phase != MeasurementInconclusive {
		t.Fatalf("%+v", st)
	}
	if err := h.c.Abort("app"); err != nil {
		t.Fatal(err)
	}
	st = h.waitStatus("aborted", func(s RolloutStatus) bool { return s.Aborted && s.ActualWeight == 0 })
	if st.AbortCause != AbortByOperator || !strings.Contains(st.Message, "operator") {
		t.Fatalf("%+v", st)
	}
	h.waitPlane(0)
}

// TestOldStateFileLoads: a state file written before State had a schema version still
// loads, and the rollout resumes from it.
func TestOldStateFileLoads(t *testing.T) {
	dir := t.TempDir()
	b, err := os.ReadFile(filepath.Join("testdata", "rollout-schema0.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "rollout-app.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	fs, _ := NewFileStore(dir)
	loaded, err := fs.Load()
	if err != nil {
		t.Fatal(err)
	}
	st := loaded["app"]
	if st == nil || st.Schema != SchemaVersion || st.Runs[0].Metrics[0].Count != 1 || st.Runs[0].Metrics[0].Measurements[0].Values[0] != 0.01 {
		t.Fatalf("%+v", st)
	}
	m := metric("errors", func(m *model.Metric) { m.Interval = 10 * time.Second; m.Count = 2 })
	cfg := testConfig(weightStep(20), analysisStep(m), weightStep(50))
	clock := &fakeClock{now: t0.Add(time.Minute)}
	h := startController(t, cfg, fs, clock)
	h.waitStatus("resumed and finished", at(PhaseHealthy, 3, 100))

	// A file from a newer Sluice is refused, not misread.
	if err := os.WriteFile(filepath.Join(dir, "rollout-app.json"), []byte(`{"schemaVersion": 99, "rollout": "app"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := fs.Load(); err == nil || !strings.Contains(err.Error(), "newer Sluice") {
		t.Fatalf("newer schema: %v", err)
	}
}

// failingStore fails every Save while fail is set.
type failingStore struct {
	MemStore
	mu    sync.Mutex
	fail  bool
	tries int
}

var errDiskFull = errors.New("write .sluice/rollout-app.json: no space left on device")

func (s *failingStore) setFail(v bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fail = v
}

func (s *failingStore) Save(st *State) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tries++
	if s.fail {
		return errDiskFull
	}
	return s.MemStore.Save(st)
}

func (s *failingStore) Load() (map[string]*State, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.MemStore.Load()
}

// TestSaveFailureNeverPromotesButAborts: while the state cannot be saved, a due step
// does not happen and promote reports the failure; a failing measurement still sends
// every request back to stable, and so does the operator's abort, which says the state
// was not saved; the save is retried (logged once) and the abort lands on disk.
func TestSaveFailureNeverPromotesButAborts(t *testing.T) {
	core, logs := observer.New(zapcore.InfoLevel)
	m := metric("errors", func(m *model.Metric) { m.Interval = 10 * time.Second; m.Count = 5 })
	cfg := testConfig(weightStep(20), pauseStep(time.Minute), weightStep(50), analysisStep(m), weightStep(80))
	clock := &fakeClock{now: t0}
	store := &failingStore{}
	h := &harness{t: t, clock: clock, plane: &fakePlane{}, meas: &fakeMeasurer{phases: map[string]MeasurementPhase{}}}
	c, err := NewController(cfg, Options{Clock: clock, DataPlanes: []DataPlane{h.plane}, Store: store, Measurer: h.meas,
		Logger: zap.New(core)})
	if err != nil {
		t.Fatal(err)
	}
	h.c = c
	h.stop = runCtx(t, c)
	h.waitStatus("paused", at(PhasePaused, 1, 20))

	store.setFail(true)
	clock.Advance(time.Minute) // the pause is over, but its end cannot be saved
	st := h.waitStatus("save failure shown", func(s RolloutStatus) bool { return s.PersistError != "" })
	for i := 0; i < 5; i++ {
		clock.Advance(time.Second)
		st = h.waitStatus("still at step 1", func(s RolloutStatus) bool { return true })
	}
	if st.Step != 1 || st.SetWeight != 20 || h.plane.canaryWeight() != 20 || !strings.Contains(st.PersistError, "no space left") {
		t.Fatalf("moved on without saving: %+v", st)
	}
	var pe *PersistError
	if err := c.Promote("app", false); !errors.As(err, &pe) || pe.Applied || pe.HTTPStatus() != 503 {
		t.Fatalf("promote while saving fails: %v", err)
	}
	// The operator's abort takes effect anyway, and says the state was not saved.
	err = c.Abort("app")
	if !errors.As(err, &pe) || !pe.Applied || !strings.Contains(err.Error(), "could not be saved") {
		t.Fatalf("abort while saving fails: %v", err)
	}
	h.waitPlane(0)
	h.waitStatus("aborted in memory", func(s RolloutStatus) bool { return s.Aborted && s.ActualWeight == 0 && s.PersistError != "" })
	if n := logs.FilterMessageSnippet("cannot save rollout state").Len(); n != 1 {
		t.Fatalf("save error logged %d times, want once per distinct error", n)
	}
	store.mu.Lock()
	tries := store.tries
	store.mu.Unlock()
	if tries > 20 {
		t.Fatalf("%d save attempts in a few fake seconds: no backoff", tries)
	}
	// The disk recovers: the abort is saved.
	store.setFail(false)
	clock.Advance(time.Minute)
	h.waitStatus("saved", func(s RolloutStatus) bool { return s.PersistError == "" })
	saved, _ := store.Load()
	if !saved["app"].Aborted || saved["app"].SetWeight != 0 {
		t.Fatalf("abort not saved: %+v", saved["app"])
	}
}

// TestSaveFailureStillAbortsOnFailedMeasurement: a failing measurement while the disk
// fails still takes the weight to 0.
func TestSaveFailureStillAbortsOnFailedMeasurement(t *testing.T) {
	m := metric("errors", func(m *model.Metric) { m.Interval = 10 * time.Second; m.Count = 5 })
	cfg := testConfig(weightStep(20), analysisStep(m), weightStep(50))
	clock := &fakeClock{now: t0}
	store := &failingStore{}
	h := startController(t, cfg, store, clock)
	h.waitStatus("measuring", func(s RolloutStatus) bool {
		return s.Step == 1 && len(s.AnalysisRuns) == 1 && s.AnalysisRuns[0].Metrics[0].Count == 1
	})
	store.setFail(true)
	h.meas.set("errors", MeasurementFailed)
	clock.Advance(10 * time.Second)
	st := h.waitStatus("aborted unsaved", func(s RolloutStatus) bool { return s.Aborted && s.ActualWeight == 0 })
	if st.PersistError == "" || st.AbortCause != AbortByAnalysis {
		t.Fatalf("%+v", st)
	}
	h.waitPlane(0)
}

// refusingPlane refuses every snapshot while refuse is set.
type refusingPlane struct {
	fakePlane
	refuse  atomic.Bool
	applies atomic.Int32
}

func (p *refusingPlane) Apply(s *model.Snapshot) error {
	p.applies.Add(1)
	if p.refuse.Load() {
		return errors.New("router: listen 127.0.0.1:8080: bind: address already in use")
	}
	return p.fakePlane.Apply(s)
}

// TestRefusingDataPlaneBacksOff: a data plane that refuses every change aborts the
// rollout once and is then retried with backoff, its error logged once — never a hot
// loop; when it accepts again, the abort lands.
func TestRefusingDataPlaneBacksOff(t *testing.T) {
	core, logs := observer.New(zapcore.InfoLevel)
	cfg := testConfig(weightStep(20), pauseStep(time.Minute), weightStep(50))
	clock := &fakeClock{now: t0}
	plane := &refusingPlane{}
	c, err := NewController(cfg, Options{Clock: clock, DataPlanes: []DataPlane{plane}, Store: &MemStore{},
		Measurer: &fakeMeasurer{phases: map[string]MeasurementPhase{}}, Logger: zap.New(core)})
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, c: c, clock: clock, plane: &plane.fakePlane}
	h.stop = runCtx(t, c)
	h.waitStatus("paused", at(PhasePaused, 1, 20))
	plane.refuse.Store(true)
	clock.Advance(time.Minute)
	st := h.waitStatus("aborted by the refusal", func(s RolloutStatus) bool {
		return s.Aborted && strings.Contains(s.Message, "abort not applied yet")
	})
	if st.AbortCause != AbortByDataPlane {
		t.Fatalf("%+v", st)
	}
	before := plane.applies.Load()
	for i := 0; i < 50; i++ {
		c.poke()
		h.waitStatus("loop alive", func(RolloutStatus) bool { return true })
	}
	if n := plane.applies.Load() - before; n > 2 {
		t.Fatalf("%d applies without time passing: a hot loop", n)
	}
	// Backoff: a retry after time passes, still refused, still logged once.
	clock.Advance(time.Second)
	testenv.WaitFor(t, 5*time.Second, "a retry after the backoff", func() bool { return plane.applies.Load() > before })
	if n := logs.FilterMessageSnippet("data plane refused").Len(); n != 1 {
		t.Fatalf("refusal logged %d times, want once per distinct error", n)
	}
	plane.refuse.Store(false)
	for i := 0; i < 8; i++ {
		clock.Advance(30 * time.Second)
	}
	h.waitStatus("abort applied", func(s RolloutStatus) bool { return s.Aborted && s.ActualWeight == 0 })
	h.waitPlane(0)
}

// gate blocks its callers until opened.
type gate struct {
	once sync.Once
	ch   chan struct{}
	in   atomic.Int32
}

func newGate() *gate { return &gate{ch: make(chan struct{})} }

func (g *gate) wait() {
	g.in.Add(1)
	<-g.ch
	g.in.Add(-1)
}

func (g *gate) open() { g.once.Do(func() { close(g.ch) }) }

type blockingStore struct {
	MemStore
	mu      sync.Mutex
	blockOn *gate // nil: no blocking
}

func (s *blockingStore) Save(st *State) error {
	s.mu.Lock()
	g := s.blockOn
	s.mu.Unlock()
	if g != nil {
		g.wait()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.MemStore.Save(st)
}

type blockingPlane struct {
	fakePlane
	mu      sync.Mutex
	blockOn *gate
}

func (p *blockingPlane) Apply(s *model.Snapshot) error {
	p.mu.Lock()
	g := p.blockOn
	p.mu.Unlock()
	if g != nil {
		g.wait()
	}
	return p.fakePlane.Apply(s)
}

// answers reports whether List and Get both return within the deadline.
func answers(c *Controller, deadline time.Duration) bool {
	done := make(chan struct{})
	go func() {
		c.List()
		c.Get("app")
		c.Snapshot()
		close(done)
	}()
	select {
	case <-done:
		return true
	case <-time.After(deadline):
		return false
	}
}

// TestReadsNeverWaitForDiskOrFleet: while a save hangs in fsync and while a data plane
// hangs in Apply, status reads answer at once.
func TestReadsNeverWaitForDiskOrFleet(t *testing.T) {
	cfg := testConfig(weightStep(20), model.Step{Pause: &model.Pause{}}, weightStep(50))
	clock := &fakeClock{now: t0}
	store := &blockingStore{}
	plane := &blockingPlane{}
	c, err := NewController(cfg, Options{Clock: clock, DataPlanes: []DataPlane{plane}, Store: store,
		Measurer: &fakeMeasurer{phases: map[string]MeasurementPhase{}}})
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, c: c, clock: clock, plane: &plane.fakePlane}
	h.stop = runCtx(t, c)
	h.waitStatus("paused", at(PhasePaused, 1, 20))

	disk := newGate()
	t.Cleanup(disk.open)
	store.mu.Lock()
	store.blockOn = disk
	store.mu.Unlock()
	promoted := make(chan error, 1)
	go func() { promoted <- c.Promote("app", false) }()
	testenv.WaitFor(t, 10*time.Second, "the save to hang", func() bool { return disk.in.Load() == 1 })
	if !answers(c, 10*time.Second) {
		t.Fatal("status reads wait for the disk")
	}
	fleet := newGate()
	t.Cleanup(fleet.open)
	plane.mu.Lock()
	plane.blockOn = fleet
	plane.mu.Unlock()
	store.mu.Lock()
	store.blockOn = nil
	store.mu.Unlock()
	disk.open()
	if err := <-promoted; err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 10*time.Second, "the fleet push to hang", func() bool { return fleet.in.Load() == 1 })
	if !answers(c, 10*time.Second) {
		t.Fatal("status reads wait for the data plane")
	}
	// Decisions go on too: an abort is decided (and saved) while the push hangs.
	if err := c.Abort("app"); err != nil {
		t.Fatal(err)
	}
	if st, _ := c.Get("app"); !st.Aborted {
		t.Fatalf("%+v", st)
	}
	fleet.open()
	h.waitStatus("abort applied", func(s RolloutStatus) bool { return s.Aborted && s.ActualWeight == 0 })
}

// TestOperatorAbortIsNotTimedFromAMeasurement: an operator's abort names its cause, so
// status never says it was applied "after the failing measurement" when nothing failed.
func TestOperatorAbortIsNotTimedFromAMeasurement(t *testing.T) {
	d := newDriver(t, canary(weightStep(10), model.Step{Pause: &model.Pause{}}))
	d.tick(Inputs{Commands: []CommandKind{CmdAbort}})
	if d.st.AbortCause != AbortByOperator {
		t.Fatalf("cause %q", d.st.AbortCause)
	}
	m := metric("m", func(m *model.Metric) { m.Interval = time.Minute; m.Count = 3 })
	d = newDriver(t, canary(weightStep(10), analysisStep(m)))
	d.answer(MeasurementFailed)
	if d.st.AbortCause != AbortByAnalysis {
		t.Fatalf("cause %q", d.st.AbortCause)
	}
}
